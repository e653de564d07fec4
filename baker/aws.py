"""Sessions and clients, made in one place from the configuration.

Stages receive an ``AWS`` (or just its ``client`` callable) in their constructor, so tests hand in
emulator-backed ones. Every botocore error becomes a baker error here, chained with ``from``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from baker.errors import AWSError, UsageError

#: botocore's own retry machinery; no hand-written retry loops elsewhere
RETRIES = botocore.config.Config(
    retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10, read_timeout=60
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a wrapped or raw botocore error ('' when there is none)."""
    cause = exc.__cause__ if isinstance(exc, AWSError) else exc
    if isinstance(cause, botocore.exceptions.ClientError):
        return str(cause.response.get("Error", {}).get("Code", ""))
    return ""


def _wrap_error(exc: Exception, what: str) -> AWSError:
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "")
        msg = err.get("Message", "") or str(exc)
        return AWSError(f"AWS {what} failed: {code}: {msg}", tool="aws", details={"aws_error": code})
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.ProfileNotFound):
        return AWSError(f"AWS {what}: {exc}; configure credentials or use --local", tool="aws")
    return AWSError(f"AWS {what} failed: {exc}", tool="aws")


_BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


class _Paginator:
    def __init__(self, inner: Any, what: str) -> None:
        self._inner, self._what = inner, what

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        try:
            yield from self._inner.paginate(**kwargs)
        except _BOTO_ERRORS as exc:
            raise _wrap_error(exc, self._what) from exc


class _Waiter:
    def __init__(self, inner: Any, what: str) -> None:
        self._inner, self._what = inner, what

    def wait(self, **kwargs: Any) -> None:
        try:
            self._inner.wait(**kwargs)
        except botocore.exceptions.WaiterError as exc:
            raise AWSError(f"AWS waiter {self._what}: {exc}", tool="aws") from exc
        except _BOTO_ERRORS as exc:
            raise _wrap_error(exc, self._what) from exc


class Client:
    """A botocore client whose errors are baker errors. ``raw`` is the botocore client itself."""

    def __init__(self, raw: Any, service: str) -> None:
        self.raw = raw
        self.service = service

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.raw, name)
        if name == "get_paginator":
            return lambda op: _Paginator(attr(op), f"{self.service}.{op}")
        if name == "get_waiter":
            return lambda w: _Waiter(attr(w), f"{self.service}.{w}")
        if not callable(attr) or name.startswith("_") or name in ("can_paginate", "exceptions", "meta"):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except _BOTO_ERRORS as exc:
                raise _wrap_error(exc, f"{self.service}.{name}") from exc

        return call


@dataclass
class AWS:
    """Where AWS is for one environment: region, credentials, and (for the local cloud) the endpoint."""

    region: str
    profile: str | None = None
    role_arn: str | None = None
    endpoint_url: str | None = None
    #: static credentials (the local cloud's); never logged
    credentials: dict[str, str] | None = None
    _session: boto3.Session | None = field(default=None, repr=False)
    _clients: dict[tuple[str, str], Client] = field(default_factory=dict, repr=False)

    def session(self) -> boto3.Session:
        if self._session is None:
            try:
                if self.credentials:
                    base = boto3.Session(region_name=self.region, **self.credentials)
                else:
                    base = boto3.Session(profile_name=self.profile, region_name=self.region)
            except botocore.exceptions.ProfileNotFound as exc:
                raise UsageError(f"AWS profile {self.profile!r} not found") from exc
            if self.role_arn:
                sts = base.client("sts", endpoint_url=self.endpoint_url, config=RETRIES)
                try:
                    creds = sts.assume_role(RoleArn=self.role_arn, RoleSessionName="baker")["Credentials"]
                except _BOTO_ERRORS as exc:
                    raise _wrap_error(exc, f"sts.AssumeRole {self.role_arn}") from exc
                base = boto3.Session(
                    aws_access_key_id=creds["AccessKeyId"],
                    aws_secret_access_key=creds["SecretAccessKey"],
                    aws_session_token=creds["SessionToken"],
                    region_name=self.region,
                )
            self._session = base
        return self._session

    def client(self, service: str, region: str | None = None) -> Client:
        key = (service, region or self.region)
        if key not in self._clients:
            raw = self.session().client(
                service, region_name=key[1], endpoint_url=self.endpoint_url, config=RETRIES
            )
            self._clients[key] = Client(raw, service)
        return self._clients[key]

    def in_region(self, region: str) -> AWS:
        """The same credentials in another region (copies, promotion)."""
        return AWS(
            region=region,
            profile=self.profile,
            role_arn=self.role_arn,
            endpoint_url=self.endpoint_url,
            credentials=self.credentials,
            _session=self._session,
        )

    def env_vars(self) -> dict[str, str]:
        """Variables that point a child program (packer, terraform) at the same AWS.

        Only names of profiles and endpoints; static credentials only for the local cloud's
        fake ones. Callers must never log the result.
        """
        out = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if self.profile and not self.credentials:
            out["AWS_PROFILE"] = self.profile
        if self.credentials:
            out["AWS_ACCESS_KEY_ID"] = self.credentials["aws_access_key_id"]
            out["AWS_SECRET_ACCESS_KEY"] = self.credentials["aws_secret_access_key"]
        if self.endpoint_url:
            out["AWS_ENDPOINT_URL"] = self.endpoint_url
            out["AWS_EC2_METADATA_DISABLED"] = "true"
        return out


ClientFactory = Callable[[str], Client]
