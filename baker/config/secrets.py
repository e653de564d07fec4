"""Secrets in configuration: which keys bear one, references to where one comes from, and
redaction. A secret's value is never in a file baker reads, and never in what baker shows."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from baker.config.keys import key_path
from baker.config.types import ENV_VAR_NAME, Model
from baker.errors import UsageError


class SecretRef(Model):
    """Where a secret comes from at run time. The value itself is never in a file baker reads."""

    env: str | None = Field(None, description="name of an environment variable holding the secret")
    file: str | None = Field(None, description="path of a file holding the secret (first line)")

    @model_validator(mode="before")
    @classmethod
    def _reference(cls, v: Any) -> Any:
        # a plain string here is most likely the secret itself: say what belongs here, never echo it
        if not isinstance(v, dict):
            raise ValueError("must be {env: NAME} or {file: PATH}, never the secret itself")
        return v

    @field_validator("env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not ENV_VAR_NAME.match(v):
            raise ValueError("must name an environment variable (A-Z a-z 0-9 _), not hold the secret")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if bool(self.env) == bool(self.file):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def resolve(self, root: Path | None = None, *, key: str = "bake.vault_password") -> str:
        """The secret. Errors name the key, never what it says: a mistyped reference could be the
        secret itself (`baker config show` shows the reference)."""
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise UsageError(f"{key}: the environment variable its env: names is not set")
            return value
        assert self.file is not None
        path = Path(self.file)
        if root is not None and not path.is_absolute():
            path = root / path
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise UsageError(f"{key}: the file its file: names cannot be read: {why}") from None
        return text.splitlines()[0] if text else ""

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"


#: keys whose values are secrets, or may be a secret mistyped: never shown in an error or `config show`.
#: ``bake.vault_password`` and everything under it, and any key whose name says password, secret or
#: token (``db_password``, ``api_token``, …) wherever it is, e.g. under ``bake.ansible_vars``.
SECRET_KEYS = (("bake", "vault_password"),)
SECRET_NAME = re.compile(r"pass(word|wd|phrase)|secret|token|credential|private_?key|api_?key", re.IGNORECASE)
REDACTED = "<redacted>"


def secret_bearing(loc: tuple[Any, ...]) -> bool:
    """Whether the value at key path ``loc`` is (or is under) a secret-bearing key."""
    if any(tuple(loc[: len(k)]) == k for k in SECRET_KEYS):
        return True
    return any(isinstance(part, str) and SECRET_NAME.search(part) for part in loc)


#: where Terraform's input variables sit in an environment's settings
VARIABLES = ("deploy", "variables")


def secret_refs(data: Any, loc: tuple[Any, ...] = VARIABLES) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The secret references under ``data``: a mapping of only ``env``/``file`` at a secret-bearing
    key (``deploy.variables.db_password: {env: DB_PASSWORD}``). Elsewhere such a mapping is data
    (``tags: {env: prod}``)."""
    if isinstance(data, dict):
        if data and set(data) <= {"env", "file"} and secret_bearing(loc):
            return [(loc, data)]
        return [found for k, v in data.items() for found in secret_refs(v, (*loc, k))]
    if isinstance(data, list):
        return [found for i, v in enumerate(data) for found in secret_refs(v, (*loc, i))]
    return []


def resolve_secret_refs(data: Any, root: Path | None, loc: tuple[Any, ...] = VARIABLES) -> Any:
    """``data`` with every secret reference replaced by the secret it names (read now, at the
    moment it is needed); errors name the key, never a value."""
    if isinstance(data, dict):
        if data and set(data) <= {"env", "file"} and secret_bearing(loc):
            return SecretRef.model_validate(data).resolve(root, key=key_path(loc))
        return {k: resolve_secret_refs(v, root, (*loc, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [resolve_secret_refs(v, root, (*loc, i)) for i, v in enumerate(data)]
    return data


def redact(value: Any, loc: tuple[Any, ...] = ()) -> Any:
    """``value`` (found at ``loc``) with every value under a secret-bearing key replaced."""
    if secret_bearing(loc):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, (*loc, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, (*loc, i)) for i, v in enumerate(value)]
    return value


def secret_values(data: Any, loc: tuple[Any, ...] = ()) -> list[str]:
    """Every string under a secret-bearing key of ``data`` (what a log line must never show)."""
    if isinstance(data, dict):
        return [s for k, v in data.items() for s in secret_values(v, (*loc, k))]
    if isinstance(data, list):
        return [s for i, v in enumerate(data) for s in secret_values(v, (*loc, i))]
    if secret_bearing(loc) and isinstance(data, str | int | float) and not isinstance(data, bool):
        text = str(data)
        return [text] if len(text) >= 4 else []
    return []
