"""Typed configuration: ``baker.yml`` for the project, ``environments/*.yml`` per environment.

The merge rule, written down once (Sceptre keeps such rules in one table):

    defaults.yml  <-  <env>.yml
    mapping + mapping  -> merged key by key, recursively
    anything else      -> the environment file's value wins (scalars, lists, null)

Everything is validated at load time; the first problem becomes one ConfigError naming the file,
the key path and the offending value. Nothing runs on an invalid configuration.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from baker.errors import ConfigError, UsageError

PROJECT_FILE = "baker.yml"
ENV_DIR = "environments"
DEFAULTS_FILE = "defaults.yml"
ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
# Debian policy: package names are lowercase alphanumerics and + - . , at least two characters
DEB_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
DEB_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+~-]*$")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- secrets


class SecretRef(Model):
    """Where a secret comes from at run time. The value itself is never in a file baker reads."""

    env: str | None = Field(None, description="name of an environment variable holding the secret")
    file: str | None = Field(None, description="path of a file holding the secret (first line)")

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if bool(self.env) == bool(self.file):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def resolve(self, root: Path | None = None) -> str:
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise UsageError(f"secret expected in environment variable {self.env}, which is not set")
            return value
        assert self.file is not None
        path = Path(self.file)
        if root is not None and not path.is_absolute():
            path = root / path
        try:
            return path.read_text().splitlines()[0] if path.read_text() else ""
        except OSError as exc:
            raise UsageError(f"secret file {path}: {exc.strerror}") from exc

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"


# ---------------------------------------------------------------- baker.yml


class DebSettings(Model):
    package: str = Field(description="Debian package name")
    maintainer: str = Field(description="Maintainer control field, 'Name <email>'")
    description: str = Field(description="one-line Description control field")
    long_description: str = ""
    depends: list[str] = Field(default_factory=lambda: ["python3"])
    architecture: str = "all"
    section: str = "misc"
    priority: str = "optional"
    homepage: str | None = None
    prefix: str = Field("", description="install prefix of the app; default /opt/<package>")
    user: str = Field("", description="system user the service runs as; default the package name")
    service: str = Field("", description="systemd unit name; default the package name")
    exec_start: str = Field(description="command the unit runs, relative paths under prefix")
    env_file: str = Field("", description="environment file the unit reads; default /etc/default/<package>")
    runtime_env_file: str = Field(
        "",
        description="environment file the launch template's user data writes at first boot (runtime: of "
        "the environment), read by the unit after env_file; default /etc/<package>/runtime.env",
    )
    env_defaults: str = Field("default.env", description="file in the app source installed as env_file")

    @field_validator("package")
    @classmethod
    def _name(cls, v: str) -> str:
        if not DEB_NAME.match(v):
            raise ValueError(f"{v!r} is not a valid Debian package name (lowercase a-z 0-9 + - ., 2+ chars)")
        return v

    @field_validator("maintainer")
    @classmethod
    def _maintainer(cls, v: str) -> str:
        if not re.match(r"^[^<>]+ <[^<>@\s]+@[^<>\s]+>$", v):
            raise ValueError(f"{v!r} must look like 'Name <email@example.com>'")
        return v

    @model_validator(mode="after")
    def _defaults(self) -> DebSettings:
        object.__setattr__(self, "prefix", self.prefix or f"/opt/{self.package}")
        object.__setattr__(self, "user", self.user or self.package)
        object.__setattr__(self, "service", self.service or self.package)
        object.__setattr__(self, "env_file", self.env_file or f"/etc/default/{self.package}")
        object.__setattr__(
            self, "runtime_env_file", self.runtime_env_file or f"/etc/{self.package}/runtime.env"
        )
        return self


class AppSettings(Model):
    name: str = Field(description="application name; used in AMI names, tags, ledger keys")
    source: str = Field(description="directory of the app's files, relative to the project")
    base_version: str = Field("0.1.0", description="version when git has no v* tag")
    deb: DebSettings

    @field_validator("name")
    @classmethod
    def _app_name(cls, v: str) -> str:
        if not re.match(r"^[a-z][a-z0-9-]{0,62}$", v):
            raise ValueError(f"{v!r} must be lowercase letters, digits and '-'")
        return v

    @field_validator("base_version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not re.match(r"^\d+\.\d+\.\d+$", v):
            raise ValueError(f"{v!r} must be MAJOR.MINOR.PATCH")
        return v


class PathSettings(Model):
    packer: str = "packer"
    ansible: str = "ansible"
    playbook: str = "ansible/site.yml"
    terraform: str = "terraform"
    build: str = ".baker/build"


class StateSettings(Model):
    table: str = Field(
        "baker-state",
        description="DynamoDB table of the release ledger, pins and deploy locks (created on first use, "
        "on-demand billing)",
    )
    lock_lease_seconds: int = Field(
        120, ge=30, description="a deploy lock not renewed for this long is stale (renewed every quarter)"
    )

    @field_validator("table")
    @classmethod
    def _table(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.-]{3,255}$", v):
            raise ValueError(f"{v!r} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")
        return v


class TerraformSettings(Model):
    binary: Literal["terraform", "tofu"] = "terraform"
    timeout: int = Field(1800, ge=60, description="seconds any one terraform command may take")
    plugin_mirror: str | None = Field(None, description="provider mirror; default: /opt/tf-plugins")


class SmokeCheck(Model):
    name: str
    command: str | None = Field(None, description="shell command run over SSH; must exit 0")
    http: str | None = Field(None, description="URL fetched on the instance; must answer 2xx")
    expect: str | None = Field(None, description="text the output must contain")

    @model_validator(mode="after")
    def _one(self) -> SmokeCheck:
        if bool(self.command) == bool(self.http):
            raise ValueError("give exactly one of 'command' or 'http'")
        return self


class ProjectSettings(Model):
    app: AppSettings
    paths: PathSettings = PathSettings()
    state: StateSettings = StateSettings()
    terraform: TerraformSettings = TerraformSettings()
    smoke_checks: list[SmokeCheck] = Field(default_factory=list)


# ---------------------------------------------------------------- environments/*.yml


class AWSSettings(Model):
    region: str = Field(description="AWS region, e.g. eu-west-1")
    account_id: str = Field(description="12-digit AWS account id of this environment")
    profile: str | None = Field(None, description="named profile (local credentials)")
    role_arn: str | None = Field(None, description="role to assume for this environment")

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not re.match(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", v):
            raise ValueError(f"{v!r} is not an AWS region name")
        return v

    @field_validator("account_id", mode="before")
    @classmethod
    def _account(cls, v: Any) -> Any:
        if isinstance(v, int):
            v = f"{v:012d}"
        if not isinstance(v, str) or not re.match(r"^\d{12}$", v):
            raise ValueError(f"{v!r} is not a 12-digit AWS account id")
        return v


class SourceAMIFilter(Model):
    name: str = Field(description="AMI name pattern, e.g. debian-12-amd64-*")
    owners: list[str] = Field(description="owner account ids or aliases")
    most_recent: bool = True
    architecture: str = "x86_64"


class SourceAMI(Model):
    id: str | None = Field(None, description="an explicit AMI id; wins over the filter")
    filter: SourceAMIFilter | None = None

    @model_validator(mode="after")
    def _one(self) -> SourceAMI:
        if not self.id and not self.filter:
            raise ValueError("give 'id' or 'filter'")
        if self.id and not re.match(r"^ami-[0-9a-f]{8,17}$", self.id):
            raise ValueError(f"{self.id!r} is not an AMI id")
        return self


class BakeSettings(Model):
    instance_type: str = "t3.micro"
    source_ami: SourceAMI
    vpc_id: str | None = None
    subnet_id: str | None = None
    ssh_username: str = "admin"
    encrypt_boot: bool = True
    kms_key_id: str | None = None
    volume_size: int = Field(8, ge=1, le=16384, description="root volume GiB")
    copy_to_regions: list[str] = Field(default_factory=list)
    share_with_accounts: list[str] = Field(default_factory=list)
    ansible_vars: dict[str, Any] = Field(default_factory=dict, description="extra vars for the playbook")
    vault_file: str | None = Field(None, description="Ansible Vault encrypted vars file, relative to project")
    vault_password: SecretRef | None = Field(None, description="where the vault password comes from")
    tags: dict[str, str] = Field(default_factory=dict, description="extra tags on the AMI")
    timeout: int = Field(3600, ge=60, description="seconds a packer build may take")

    @field_validator("share_with_accounts")
    @classmethod
    def _accounts(cls, v: list[str]) -> list[str]:
        for a in v:
            if not re.match(r"^\d{12}$", str(a)):
                raise ValueError(f"{a!r} is not a 12-digit AWS account id")
        return v


class BackendSettings(Model):
    bucket: str
    key: str
    region: str | None = None
    use_lockfile: bool = True
    dynamodb_table: str | None = None


class DeploySettings(Model):
    backend: BackendSettings | None = Field(None, description="Terraform S3 backend; none = local state")
    variables: dict[str, Any] = Field(default_factory=dict, description="Terraform input variables")
    health_timeout: int = Field(600, ge=10, description="seconds to wait for a healthy fleet")
    unhealthy_timeout: int | None = Field(
        180,
        ge=1,
        description="seconds the new AMI may go without a healthy target after one of its targets "
        "reported unhealthy; then the rollout fails without waiting for the refresh or health_timeout "
        "(null: never)",
    )
    min_healthy_percent: int = Field(90, ge=0, le=100)
    instance_warmup: int = Field(60, ge=0)


ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RuntimeSettings(Model):
    """What the app needs at run time in this environment. Never baked: the launch template's user
    data writes it at first boot, so one AMI runs in every environment."""

    env: dict[str, str] = Field(
        default_factory=dict,
        description="variables of the app's runtime environment file (app.deb.runtime_env_file)",
    )

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for key, value in v.items():
            if not isinstance(key, str) or not ENV_VAR_NAME.match(key):
                raise ValueError(
                    f"{key!r} is not an environment variable name (A-Z a-z 0-9 _, not a digit first)"
                )
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, int | float):
                value = str(value)
            if not isinstance(value, str):
                raise ValueError(f"{key}: a value must be a string, number or boolean")
            if "\0" in value:
                raise ValueError(f"{key}: a value cannot hold a NUL byte")
            out[key] = value
        return out


_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(value: Any) -> Any:
    """A duration as seconds: an integer, or a string like ``90s``, ``30m``, ``2h``, ``1d``."""
    if isinstance(value, bool):
        raise ValueError("a duration must be seconds or a string like 30m, 2h, 1d")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (m := _DURATION.match(value.strip())):
        return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    raise ValueError(f"{value!r} is not a duration (seconds, or like 30m, 2h, 1d)")


class PromotionSettings(Model):
    min_soak: int = Field(
        0,
        ge=0,
        description="how long the AMI must have been live and healthy in promote_from before promote "
        "takes it (seconds, or 30m, 2h, 1d)",
    )

    @field_validator("min_soak", mode="before")
    @classmethod
    def _soak(cls, v: Any) -> Any:
        return seconds(v)


class EnvironmentSettings(Model):
    aws: AWSSettings
    bake: BakeSettings
    deploy: DeploySettings = DeploySettings()
    runtime: RuntimeSettings = RuntimeSettings()
    promotion: PromotionSettings = PromotionSettings()
    promote_from: str | None = Field(
        None, description="the only environment promote may take from into this one"
    )
    require_verified: bool = Field(False, description="refuse AMIs without a valid baker:verified tag")
    protected: bool = Field(
        False, description="no direct deploy or release: changes arrive by promote, rollback or pin"
    )


# ---------------------------------------------------------------- loading


class Environment(BaseModel):
    """One environment: its name, merged settings, and the files they came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    name: str
    settings: EnvironmentSettings
    files: list[Path]
    #: what each of ``files`` says, in the same order (for ``origin``)
    layers: list[dict[str, Any]] = []

    def origin(self, *key: str) -> Path:
        """The file that sets ``key`` (a key path), or the environment's own file when none does."""
        for file, data in reversed(list(zip(self.files, self.layers, strict=False))):
            if _lookup(data, key)[0]:
                return file
        return self.files[-1]


class Project(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    root: Path
    settings: ProjectSettings

    @property
    def app(self) -> AppSettings:
        return self.settings.app

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    def environment_names(self) -> list[str]:
        d = self.root / ENV_DIR
        return sorted(p.stem for p in d.glob("*.yml") if p.name != DEFAULTS_FILE) if d.is_dir() else []

    def environment(self, name: str) -> Environment:
        return load_environment(self, name)


def merge(base: Any, override: Any) -> Any:
    """The merge rule: mappings merge deeply; anything else from ``override`` wins."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return override


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _lookup(data: Any, loc: tuple[Any, ...]) -> tuple[bool, Any]:
    cur = data
    for part in loc:
        in_dict = isinstance(cur, dict) and part in cur
        in_list = isinstance(cur, list) and isinstance(part, int) and part < len(cur)
        if in_dict or in_list:
            cur = cur[part]
        else:
            return False, None
    return True, cur


def _describe(exc: ValidationError, sources: list[tuple[Path, dict[str, Any]]], merged: Any) -> str:
    """One line per problem: ``file: key.path: message (got value)``; the file is the one that set it."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # model validators report on the object itself; the message says which key
        path = ".".join(str(p) for p in loc) or "(top level)"
        origin = sources[0][0]
        for file, data in reversed(sources):
            found, _ = _lookup(data, loc)
            if found:
                origin = file
                break
        else:
            # a missing key: blame the most specific file that has the parent
            for file, data in reversed(sources):
                if _lookup(data, loc[:-1])[0]:
                    origin = file
                    break
        kind = err["type"]
        msg = err["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            msg = "unknown key"
        found, value = _lookup(merged, loc)
        shown = f" (got {json.dumps(value, default=str)[:120]})" if found and kind != "missing" else ""
        lines.append(f"{origin}: {path}: {msg}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0]


def load_project(root: str | Path) -> Project:
    root = Path(root).resolve()
    path = root / PROJECT_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: not found; is --project ({root}) a baker project?")
    data = read_yaml(path)
    try:
        settings = ProjectSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, [(path, data)], data)) from None
    return Project(root=root, settings=settings)


def load_environment(project: Project, name: str) -> Environment:
    known = project.environment_names()
    if not ENV_NAME.match(name) or name not in known:
        raise ConfigError(
            f"unknown environment {name!r}; known: {', '.join(known) or '(none: add environments/<env>.yml)'}",  # noqa: E501
            details={"known": known},
        )
    env_dir = project.root / ENV_DIR
    sources: list[tuple[Path, dict[str, Any]]] = []
    defaults = env_dir / DEFAULTS_FILE
    if defaults.is_file():
        sources.append((defaults, read_yaml(defaults)))
    own = env_dir / f"{name}.yml"
    sources.append((own, read_yaml(own)))
    merged: dict[str, Any] = {}
    for _, data in sources:
        merged = merge(merged, data)
    try:
        settings = EnvironmentSettings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources, merged)) from None
    if settings.promote_from is not None and settings.promote_from not in known:
        raise ConfigError(
            f"{own}: promote_from: unknown environment {settings.promote_from!r}; known: {', '.join(known)}"
        )
    return Environment(
        name=name, settings=settings, files=[p for p, _ in sources], layers=[d for _, d in sources]
    )


def redacted(env: Environment) -> dict[str, Any]:
    """The merged settings as JSON-able data; secrets appear only as where they come from."""
    data = env.settings.model_dump(mode="json")
    vp = env.settings.bake.vault_password
    if vp is not None:
        data["bake"]["vault_password"] = f"<secret from {vp.describe()}>"
    return data


def schema() -> dict[str, Any]:
    return {
        "baker.yml": ProjectSettings.model_json_schema(),
        "environments/<env>.yml": EnvironmentSettings.model_json_schema(),
    }
