"""Sessions and clients, made in one place from the configuration.

Stages receive an ``AWS`` (or just its ``client`` callable) in their constructor, so tests hand in
emulator-backed ones. Every botocore error becomes a baker error here, chained with ``from``.

An assumed role (``aws.role_arn``) is botocore's refreshing credentials: renewed before they
expire, for every client of the session, the deploy lock's renewer included, so a release that
outlives one role session does not fail midway. Child programs (Packer, Terraform) get the same
identity from ``child_env()``: a generated AWS config profile whose ``credential_process`` asks
this process, over a Unix socket that lives only as long as the child, for the current
credentials. No key is ever in argv, on disk, or in a child's environment.

Sessions are botocore's own (``Session`` below): boto3 would add only its resources and S3 transfer
layer, which baker does not use, and importing it costs every command 0.2 s before it starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gzip
import hashlib
import json
import marshal
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.config
import botocore.credentials
import botocore.exceptions
import botocore.loaders
import botocore.session

from baker import kept
from baker.errors import AWSError, BakerError, UsageError

#: botocore's own retry machinery; no hand-written retry loops elsewhere
RETRIES = botocore.config.Config(
    retries={"mode": "standard", "max_attempts": 8}, connect_timeout=10, read_timeout=60
)


#: a poll that runs its own loop against a deadline (the health wait): botocore retries a failed
#: call a few times only, so one call cannot outlast the deadline by a minute of backoff
POLL_ATTEMPTS = 3
#: what AWS answers a caller that asks too often (botocore retries these itself)
THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
    }
)


def transient(exc: BaseException) -> str | None:
    """Why a call failed, when that may pass by itself (the endpoint did not answer, or throttled us
    after botocore's retries): None for every other error. The words name the cause."""
    cause = exc.__cause__ if isinstance(exc, AWSError) else exc
    if isinstance(cause, botocore.exceptions.ClientError):
        code = str(cause.response.get("Error", {}).get("Code", ""))
        return f"throttled: {code}" if code in THROTTLING else None
    if isinstance(cause, botocore.exceptions.ConnectTimeoutError | botocore.exceptions.ReadTimeoutError):
        return "timed out"
    if isinstance(
        cause, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectionClosedError
    ):
        text = str(getattr(cause, "kwargs", {}).get("error", "")) or str(cause)
        for words in (
            "Connection refused",
            "Connection reset",
            "No route to host",
            "Name or service not known",
        ):
            if words.lower() in text.lower():
                return words.lower()
        return "connection failed"
    return None


def endpoint_of(exc: BaseException) -> str | None:
    """The endpoint a connection error names (scheme://host[:port]), if it names one."""
    cause = exc.__cause__ if isinstance(exc, AWSError) else exc
    url = str(getattr(cause, "kwargs", {}).get("endpoint_url", "") or "")
    if not url:
        return None
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


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
    _session: Session | None = field(default=None, repr=False)
    _clients: dict[tuple[Any, ...], Client] = field(default_factory=dict, repr=False)

    def session(self) -> Session:
        if self._session is None:
            try:
                if self.credentials:
                    base = Session.make(_botocore_session(), region_name=self.region, **self.credentials)
                else:
                    base = Session.make(
                        _botocore_session(), profile_name=self.profile, region_name=self.region
                    )
            except botocore.exceptions.ProfileNotFound as exc:
                raise UsageError(f"AWS profile {self.profile!r} not found") from exc
            self._session = self._assume(base) if self.role_arn else base
        return self._session

    def _assume(self, base: Session) -> Session:
        """A session on the role whose credentials botocore renews before they expire."""
        source = base.get_credentials()
        if source is None:
            raise AWSError(f"no AWS credentials to assume {self.role_arn} with", tool="aws")
        fetcher = botocore.credentials.AssumeRoleCredentialFetcher(
            client_creator=functools.partial(
                base.client, endpoint_url=self.endpoint_url, region_name=self.region, config=RETRIES
            ),
            source_credentials=source,
            role_arn=str(self.role_arn),
            extra_args={"RoleSessionName": "baker"},
            cache=_NoCache(),  # the refreshing credentials decide when to ask STS again
        )

        def refresh() -> dict[str, Any]:
            try:
                return fetcher.fetch_credentials()
            except _BOTO_ERRORS as exc:
                raise _wrap_error(exc, f"sts.AssumeRole {self.role_arn}") from exc

        creds = botocore.credentials.DeferredRefreshableCredentials(
            refresh_using=refresh, method="assume-role"
        )
        core = _botocore_session()
        core._credentials = creds  # the documented way to give a session refreshing credentials
        return Session.make(core, region_name=self.region)

    def client(self, service: str, region: str | None = None, *, attempts: int | None = None) -> Client:
        """``attempts``: botocore's attempts per call, when not RETRIES' (a poll with its own loop)."""
        key = (
            (service, region or self.region)
            if attempts is None
            else (service, region or self.region, attempts)
        )
        if key not in self._clients:
            config = RETRIES
            if attempts is not None:
                config = RETRIES.merge(
                    botocore.config.Config(
                        retries={"mode": "standard", "total_max_attempts": attempts}, connect_timeout=5
                    )
                )
            raw = self.session().client(
                service, region_name=key[1], endpoint_url=self.endpoint_url, config=config
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
        """Variables that point a child program at the same region and endpoint (no credentials).

        Static credentials only for the local cloud's fake ones. Callers must never log the result.
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

    @contextlib.contextmanager
    def child_env(self) -> Iterator[dict[str, str]]:
        """The environment a child program (packer, terraform) needs to act as this identity.

        Without a role: region, endpoint and profile (or the local cloud's fake keys). With a role:
        a profile of a generated AWS config file whose credential_process fetches this process's
        current (refreshed) role credentials over a Unix socket; both go away with the context.
        Variables that would shadow the profile (keys of the caller) are set empty.
        """
        out = self.env_vars()
        if not self.role_arn:
            yield out
            return
        session = self.session()
        with tempfile.TemporaryDirectory(prefix="baker-aws-") as tmp:
            os.chmod(tmp, 0o700)
            sock_path = Path(tmp) / "credentials.sock"
            server = _CredentialServer(sock_path, session)
            server.start()
            try:
                config = Path(tmp) / "config"
                command = f"{sys.executable} -m baker.aws credential-process {sock_path}"
                config.write_text(
                    f"[profile baker]\ncredential_process = {command}\nregion = {self.region}\n"
                )
                config.chmod(0o600)
                for key in (
                    "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY",
                    "AWS_SESSION_TOKEN",
                    "AWS_SECURITY_TOKEN",
                ):
                    out[key] = ""
                package_root = str(Path(__file__).resolve().parents[1])
                out.update(
                    AWS_PROFILE="baker",
                    AWS_CONFIG_FILE=str(config),
                    AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                    AWS_SDK_LOAD_CONFIG="1",
                    PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
                )
                yield out
            finally:
                server.stop()


class _JSONFiles:
    """botocore's data files (service models, endpoints), each parsed once per botocore install.

    botocore parses them on every start of every process (EC2's model alone is 4 MB of JSON in a
    gzip file), and into an OrderedDict for every object: together the largest single cost of a
    cache-hit bake. This loader parses them into plain dicts (a dict keeps its order since Python
    3.7) and keeps each file's data in ``cache`` in marshal's format, named by the file's path,
    size and modification time (and the Python that wrote it), so the next process reads it back
    in a fraction of the time; a cache that cannot be read or written is only slower.
    ``exists`` and ``load_file`` are what botocore's Loader asks of the ``file_loader`` it is given.
    """

    SUFFIXES = ((".json", open), (".json.gz", gzip.open))

    def __init__(self, cache: Path | None) -> None:
        self.cache = cache

    def exists(self, file_path: str) -> bool:
        return any(os.path.isfile(file_path + suffix) for suffix, _ in self.SUFFIXES)

    def load_file(self, file_path: str) -> Any:
        for suffix, opener in self.SUFFIXES:
            path = file_path + suffix
            try:
                st = os.stat(path)
            except OSError:
                continue
            kept = self._kept(path, st)
            if kept is not None:
                with contextlib.suppress(OSError, ValueError, EOFError, TypeError):
                    return marshal.loads(kept.read_bytes())  # noqa: S302 - baker wrote it, as a .pyc
            with opener(path, "rb") as fh:
                data = json.loads(fh.read().decode("utf-8"))
            if kept is not None:
                self._keep(kept, data)
            return data
        return None

    def _kept(self, path: str, st: os.stat_result) -> Path | None:
        if self.cache is None:
            return None
        name = hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]
        return self.cache / f"{name}.marshal"

    @staticmethod
    def _keep(target: Path, data: Any) -> None:
        with contextlib.suppress(ValueError):  # data marshal cannot write: parsed every time
            kept.keep(target, marshal.dumps(data))


def data_cache_dir() -> Path:
    """Where botocore's parsed data files are kept: $BAKER_CACHE_DIR or ~/.cache/baker, then
    botocore-<version>-py<X.Y>/ (marshal's format belongs to one Python)."""
    import botocore

    base = Path(os.environ.get("BAKER_CACHE_DIR") or Path.home() / ".cache" / "baker")
    return base / f"botocore-{botocore.__version__}-py{sys.version_info[0]}.{sys.version_info[1]}"


@functools.cache
def _data_loader() -> botocore.loaders.Loader:
    """botocore's data files (service models, endpoints) parsed once per process, not once per
    session: a command over several environments (status, gc, promote) makes a session for each,
    and each would parse the same JSON again (about 0.3 s of CPU per session)."""
    return botocore.loaders.Loader(file_loader=_JSONFiles(data_cache_dir()))


def known_regions() -> frozenset[str]:
    """Every region of every partition in botocore's endpoint data, read through the shared
    loader: the sessions made afterwards parse that data no second time."""
    core = _botocore_session()
    return frozenset(r for p in core.get_available_partitions() for r in core.get_available_regions("ec2", p))


def _botocore_session() -> botocore.session.Session:
    core = botocore.session.Session()
    core.register_component("data_loader", _data_loader())
    return core


class Session:
    """A botocore session with what baker (and a test or bench) uses of boto3's: ``client``,
    ``get_credentials``, ``events``."""

    def __init__(self, core: botocore.session.Session, region_name: str | None) -> None:
        self.core = core
        self.region_name = region_name

    @classmethod
    def make(
        cls,
        core: botocore.session.Session,
        *,
        region_name: str | None = None,
        profile_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
    ) -> Session:
        if profile_name:
            core.set_config_variable("profile", profile_name)
        if aws_access_key_id or aws_secret_access_key:
            core.set_credentials(aws_access_key_id, aws_secret_access_key, aws_session_token)
        if region_name:
            core.set_config_variable("region", region_name)
        core.get_scoped_config()  # a missing profile fails here (ProfileNotFound)
        return cls(core, region_name)

    @property
    def events(self) -> Any:
        return self.core.get_component("event_emitter")

    def get_credentials(self) -> Any:
        return self.core.get_credentials()

    def client(
        self,
        service: str,
        region_name: str | None = None,
        *,
        endpoint_url: str | None = None,
        config: botocore.config.Config | None = None,
        **credentials: Any,
    ) -> Any:
        """``credentials``: the keys of another identity (botocore's AssumeRole fetcher passes them)."""
        return self.core.create_client(
            service,
            region_name=region_name or self.region_name,
            endpoint_url=endpoint_url,
            config=config,
            **credentials,
        )


class _NoCache(dict):
    """A credential cache that keeps nothing."""

    def __setitem__(self, key: Any, value: Any) -> None:
        return None


class _CredentialServer:
    """Answers each connection with the session's current credentials (credential_process JSON)."""

    def __init__(self, path: Path, session: Session) -> None:
        self.path = path
        self.session = session
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o600)
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="baker-credentials", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def answer(self) -> bytes:
        creds = self.session.get_credentials()
        if creds is None:
            return json.dumps({"error": "no credentials"}).encode()
        frozen = creds.get_frozen_credentials()
        expiry = getattr(creds, "_expiry_time", None)
        if not isinstance(expiry, dt.datetime):
            expiry = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
        return json.dumps(
            {
                "Version": 1,
                "AccessKeyId": frozen.access_key,
                "SecretAccessKey": frozen.secret_key,
                "SessionToken": frozen.token,
                "Expiration": expiry.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            }
        ).encode()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(self.answer())
                except (OSError, BakerError):
                    continue


def credential_process(sock_path: str) -> int:
    """The child side: print what the parent's credential server says (AWS credential_process)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        try:
            sock.connect(sock_path)
        except OSError as exc:
            print(f"baker credential_process: {sock_path}: {exc.strerror}", file=sys.stderr)
            return 1
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if b'"error"' in data[:20]:
        print(f"baker credential_process: {data.decode(errors='replace')}", file=sys.stderr)
        return 1
    sys.stdout.write(data.decode())
    return 0


ClientFactory = Callable[[str], Client]


if __name__ == "__main__":  # python -m baker.aws credential-process SOCKET
    if len(sys.argv) == 3 and sys.argv[1] == "credential-process":
        sys.exit(credential_process(sys.argv[2]))
    print("usage: python -m baker.aws credential-process SOCKET", file=sys.stderr)
    sys.exit(2)
