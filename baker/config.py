"""Typed configuration: ``baker.yml`` for the project, ``environments/*.yml`` per environment.

The merge rule, written down once (Sceptre keeps such rules in one table):

    defaults.yml  <-  <env>.yml
    mapping + mapping  -> merged key by key, recursively
    anything else      -> the environment file's value wins (scalars, lists, null)

Everything is validated at load time; the first problem becomes one ConfigError naming the file,
the key path and the offending value. Nothing runs on an invalid configuration.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from baker.errors import ConfigError, UsageError

PROJECT_FILE = "baker.yml"
ENV_DIR = "environments"
DEFAULTS_FILE = "defaults.yml"
ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
# Debian policy: package names are lowercase alphanumerics and + - . , at least two characters
DEB_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
DEB_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+~-]*$")
ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- secrets


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


# ---------------------------------------------------------------- baker.yml


def system_user(package: str) -> str:
    """The system user derived from a package name: Debian allows ``+`` and ``.`` in package names,
    adduser not in user names (``acme.tools`` -> ``acme-tools``); at most 32 characters."""
    name = re.sub(r"[^a-z0-9_-]", "-", package.lower())
    if not re.match(r"^[a-z_]", name):
        name = "_" + name
    return name[:32]


def unit_name(package: str) -> str:
    """The systemd unit name derived from a package name: ``+`` is not allowed in unit names."""
    return package.replace("+", "-")


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
        object.__setattr__(self, "user", self.user or system_user(self.package))
        object.__setattr__(self, "service", self.service or unit_name(self.package))
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


def plain_data(value: Any, where: str = "") -> Any:
    """``value`` when JSON can carry it to Ansible or Terraform as written: strings, finite numbers,
    booleans, null, lists and mappings with string keys. A YAML date, set or binary is refused here,
    at load, not halfway through a bake or a deploy."""
    at = f" at {where}" if where else ""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a number JSON can carry{at}")
        return value
    if isinstance(value, list):
        return [plain_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"the key {k!r}{at} must be a string (quote it)")
            plain_data(v, f"{where}.{k}" if where else k)
        return value
    kind = {"date": "a date", "datetime": "a timestamp", "set": "a set", "bytes": "binary data"}
    what = kind.get(type(value).__name__, f"a {type(value).__name__}")
    raise ValueError(f"{what}{at} cannot be passed on as written; quote it to make it a string")


@functools.cache
def aws_regions() -> frozenset[str]:
    """Every region of every AWS partition in the endpoint data of the botocore baker runs with: the
    regions baker can talk to (a region newer than that botocore needs a newer botocore anyway)."""
    import botocore.session

    session = botocore.session.Session()
    return frozenset(
        r for p in session.get_available_partitions() for r in session.get_available_regions("ec2", p)
    )


def check_region(name: Any) -> str:
    if not isinstance(name, str) or name not in aws_regions():
        import botocore

        close = difflib.get_close_matches(str(name), sorted(aws_regions()), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(
            f"{name!r} is not an AWS region (botocore {botocore.__version__} knows "
            f"{len(aws_regions())}){hint}"
        )
    return name


#: AWS allows 50 tags per AMI or snapshot. baker sets up to 10 provenance tags when it bakes
#: (baker:app … baker:builder, baker:ci-url), baker:verified after verify, and baker:promoted-from /
#: baker:promoted-to on promotion: 13 stay reserved for baker.
AWS_MAX_TAGS = 50
BAKER_RESERVED_TAGS = 13
AWS_TAG_KEY_MAX = 128
AWS_TAG_VALUE_MAX = 256
KMS_KEY = re.compile(
    r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|alias/[A-Za-z0-9/_-]+"
    r"|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/\S+)$"
)
#: EC2 instance types are family.size: t3.micro, m7i-flex.large, u-6tb1.metal
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """AWS's limits on tags, checked at load rather than by AWS after a ten-minute bake."""
    room = AWS_MAX_TAGS - BAKER_RESERVED_TAGS
    if len(tags) > room:
        raise ValueError(
            f"{len(tags)} tags; at most {room} (AWS allows {AWS_MAX_TAGS} per AMI and baker reserves "
            f"{BAKER_RESERVED_TAGS} for its own baker:* tags)"
        )
    for key, value in tags.items():
        shown = repr(key) if len(key) <= 40 else repr(key[:40]) + "..."
        if not key.strip():
            raise ValueError("a tag key cannot be empty")
        if len(key) > AWS_TAG_KEY_MAX:
            raise ValueError(f"tag key {shown} has {len(key)} characters; AWS allows {AWS_TAG_KEY_MAX}")
        if len(value) > AWS_TAG_VALUE_MAX:
            raise ValueError(
                f"the value of tag {shown} has {len(value)} characters; AWS allows {AWS_TAG_VALUE_MAX}"
            )
        if key.lower().startswith("aws:"):
            raise ValueError(f"tag key {shown}: the aws: prefix is reserved by AWS")
        if key.startswith("baker:"):
            raise ValueError(f"tag key {shown}: the baker: prefix is reserved for baker's provenance tags")
    return tags


class AWSSettings(Model):
    region: str = Field(description="AWS region, e.g. eu-west-1")
    account_id: str = Field(description="12-digit AWS account id of this environment")
    profile: str | None = Field(None, description="named profile (local credentials)")
    role_arn: str | None = Field(None, description="role to assume for this environment")

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        return check_region(v)

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


ROLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class Layer(Model):
    roles: list[str] = Field(min_length=1, description="roles of the Ansible tree (paths.ansible/roles)")

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: list[str]) -> list[str]:
        for role in v:
            if not ROLE_NAME.match(role):
                raise ValueError(f"{role!r} is not a role name")
        if len(set(v)) != len(v):
            raise ValueError("a role is named twice")
        return v


class Layers(Model):
    """The image as two layers, each cached by its own recipe (DESIGN.md: layered images)."""

    base: Layer = Field(description="what does not depend on the app build: baked by Packer, rarely")
    app: Layer = Field(description="the .deb and the app's roles, on top of the base")


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
    layers: Layers | None = Field(None, description="bake the image as a base and an app layer")
    app_layer: Literal["instance", "snapshot"] | None = Field(
        None,
        description="how the app layer is built: 'instance' (Packer from the base AMI, the default) or "
        "'snapshot' (no instance: the base's blocks, a loop mount, Ansible's chroot connection)",
    )

    @model_validator(mode="after")
    def _layered(self) -> BakeSettings:
        if self.app_layer is not None and self.layers is None:
            raise ValueError("app_layer needs layers (bake.layers.base.roles and bake.layers.app.roles)")
        return self

    @field_validator("vpc_id", "subnet_id")
    @classmethod
    def _network_ids(cls, v: str | None, info: ValidationInfo) -> str | None:
        prefix = "vpc" if info.field_name == "vpc_id" else "subnet"
        if v is not None and not re.match(rf"^{prefix}-[0-9a-f]+$", v):
            raise ValueError(f"{v!r} is not a {prefix} id ({prefix}-0123456789abcdef0)")
        return v

    @field_validator("kms_key_id")
    @classmethod
    def _kms_key(cls, v: str | None) -> str | None:
        if v is not None and not KMS_KEY.match(v):
            raise ValueError(f"{v!r} is not a KMS key id, alias (alias/NAME) or ARN")
        return v

    @field_validator("ssh_username")
    @classmethod
    def _ssh_user(cls, v: str) -> str:
        if not re.match(r"^[a-z_][a-z0-9_.-]*$", v):
            raise ValueError(f"{v!r} is not a user name")
        return v

    @field_validator("ansible_vars")
    @classmethod
    def _ansible_vars(cls, v: dict[str, Any]) -> dict[str, Any]:
        return plain_data(v)

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        if not INSTANCE_TYPE.match(v):
            raise ValueError(f"{v!r} is not an EC2 instance type (family.size, e.g. t3.micro)")
        return v

    @field_validator("copy_to_regions")
    @classmethod
    def _regions(cls, v: list[str]) -> list[str]:
        for region in v:
            check_region(region)
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        return check_tags(v)

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

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        return v if v is None else check_region(v)


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
    strategy: Literal["rolling", "blue_green"] = Field(
        "rolling",
        description="rolling: one group, an instance refresh per release; blue_green: two groups behind "
        "one weighted listener, the idle one tested before it takes traffic (switching replaces the fleet)",
    )
    traffic_steps: list[int] = Field(
        default_factory=lambda: [100],
        description="blue_green: the new color's share of user traffic, step by step, ending at 100",
    )
    step_seconds: int = Field(
        30,
        ge=0,
        description="blue_green: how long each traffic step is watched (health, 5xx) before the next",
    )
    keep_previous: int = Field(
        3600,
        ge=0,
        description="blue_green: how long the previous color keeps its capacity for a rollback by weights "
        "(seconds, or 30m, 2h, 1d); then 'baker retire' or the next deploy scales it to zero",
    )
    max_5xx: int = Field(
        0, ge=0, description="blue_green: 5xx answers of the new color a traffic step tolerates"
    )

    @field_validator("variables")
    @classmethod
    def _variables(cls, v: dict[str, Any]) -> dict[str, Any]:
        v = plain_data(v)
        for loc, ref in secret_refs(v, VARIABLES):
            try:
                SecretRef.model_validate(ref)
            except ValidationError as exc:
                # the reference's own words (they never hold its value), under the user's key path
                why = "; ".join(_message(e) for e in exc.errors())
                raise ValueError(f"{key_path(loc)}: {why}") from None
        return v

    @field_validator("keep_previous", mode="before")
    @classmethod
    def _keep(cls, v: Any) -> Any:
        return seconds(v)

    @field_validator("traffic_steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if not v or v[-1] != 100 or any(not 0 < s <= 100 for s in v) or v != sorted(set(v)):
            raise ValueError(
                "traffic_steps must rise strictly, each 1-100, and end at 100 (e.g. [10, 50, 100])"
            )
        return v


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


#: limits of the YAML loader, so a bad file is refused in bounded time and memory: real configuration
#: files are a few KiB, a few levels deep, with a handful of anchors
MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 32
#: values in the document with every alias expanded (an "alias bomb" stays small on disk only)
MAX_VALUES = 20_000
MAX_ALIASES = 100


_SURROGATE = re.compile(r"[\ud800-\udfff]")


class _Refused(Exception):
    """The loader refuses the document at ``mark`` (a yaml Mark)."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader with limits, counted while composing (before anything is built):

    - nesting deeper than MAX_DEPTH levels is refused;
    - anchors and aliases (and ``<<: *base`` merges) are allowed, but at most MAX_ALIASES aliases, and
      the document with every alias expanded may hold at most MAX_VALUES values; an alias inside the
      value it names (a cycle) is refused;
    - a key twice in one mapping is refused, naming both lines.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._values = 0
        self._aliases = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}
        self._open: set[str] = set()
        self._path: list[str] = []

    def _grow(self, n: int, mark: Any) -> None:
        self._values += n
        if self._values > MAX_VALUES:
            bomb = " with its aliases expanded (an alias bomb?)" if self._aliases else ""
            raise _Refused(mark, f"more than {MAX_VALUES} values{bomb}")

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise _Refused(event.start_mark, f"alias *{event.anchor} is inside the value it names")
            node = super().compose_node(parent, index)
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(event.start_mark, f"more than {MAX_ALIASES} aliases")
            self._grow(self._sizes.get(id(node), 1), event.start_mark)
            return node
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
        keyed = isinstance(parent, yaml.MappingNode) and isinstance(index, yaml.ScalarNode)
        if keyed:
            self._path.append(index.value)
        if anchor:
            self._open.add(anchor)
        before = self._values
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor or "")
            if keyed:
                self._path.pop()
        self._grow(1, event.start_mark)
        self._sizes[id(node)] = self._values - before
        if isinstance(node, yaml.ScalarNode) and _SURROGATE.search(node.value):
            raise _Refused(event.start_mark, "an escape like \\ud800 makes text that is not valid unicode")
        if isinstance(node, yaml.ScalarNode) and "\0" in node.value:
            raise _Refused(event.start_mark, "a NUL character (\\0) cannot be passed on to any program")
        return node

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], Any] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                where = ".".join(self._path)
                raise _Refused(
                    key_node.start_mark,
                    f"{where + ': ' if where else ''}duplicate key {key_node.value!r} "
                    f"at lines {seen[key].line + 1} and {key_node.start_mark.line + 1}",
                )
            seen[key] = key_node.start_mark
        return node


def _line_of(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    return f"{line}:{position - (text.rfind(chr(10), 0, position) + 1) + 1}"


def read_yaml(path: Path) -> dict[str, Any]:
    """One configuration file, refused in bounded time and memory when it is not what baker reads:
    a regular file of at most MAX_FILE_BYTES of UTF-8 YAML (see _Loader for the limits), a mapping."""
    try:
        if not path.is_file():
            raise ConfigError(f"{path}: " + ("not a regular file" if path.exists() else "file not found"))
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; not a baker configuration file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}:{line}:{column}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        data = loader.get_single_data()
    except _Refused as exc:
        raise ConfigError(f"{path}:{exc.mark.line + 1}: {exc.message}") from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(
            f"{path}:{_line_of(text, exc.position)}: invalid YAML: character #x{exc.character:04x} "
            "is not allowed (control characters must be escaped in a double-quoted string)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # e.g. an integer of thousands of digits, or a date like 2024-02-30
        raise ConfigError(f"{path}: invalid YAML value: {str(exc).split(';')[0][:200]}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (key: value), not a {_kind(data)}")
    return data


def _kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


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


def key_path(loc: tuple[Any, ...]) -> str:
    """A key path as the user writes it: ``bake.tags``, ``smoke_checks[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


_MAPPING = "must be a mapping (key: value)"
_MESSAGES = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
    "model_type": _MAPPING,
    "model_attributes_type": _MAPPING,
    "dict_type": _MAPPING,
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "set_type": "must be a list",
    "string_type": "must be a string (quote it)",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "none_required": "must be null",
}


def _message(err: Any) -> str:
    """pydantic's message in the user's words: never a model's class name."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "?")
        word = {"greater_than_equal": "at least", "greater_than": "more than", "less_than_equal": "at most"}
        return f"must be {word.get(kind, 'less than')} {bound}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')}"
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    msg = re.sub(r"\s*or instance of \w+", "", msg)
    return msg.replace("Input should be", "must be")


def _origin(
    loc: tuple[Any, ...], sources: list[tuple[Path, dict[str, Any]]], missing: bool
) -> tuple[Path, str]:
    """The file to blame for ``loc``, and a hint: the most specific file that sets the key; for a
    missing key, the least specific file that has its parent (where shared settings live)."""
    if not missing:
        for file, data in reversed(sources):
            if _lookup(data, loc)[0]:
                return file, ""
    for file, data in sources:
        if _lookup(data, loc[:-1])[0]:
            others = [str(f) for f, _ in sources if f != file]
            return file, f" (add it here{', or in ' + others[-1] if others else ''})" if missing else ""
    return sources[0][0], ""


def _describe(exc: ValidationError, sources: list[tuple[Path, dict[str, Any]]], merged: Any) -> str:
    """One line per problem: ``file: key.path: message (got value)``; the file is the one that set it
    (or should). Values under secret-bearing keys are never shown."""
    lines = []
    for err in exc.errors():
        # drop pydantic's internal location parts (validator names, union members, "[key]")
        loc = tuple(
            p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]"))
        )
        kind = err["type"]
        origin, hint = _origin(loc, sources, kind == "missing")
        msg = _message(err)
        found, value = _lookup(merged, loc)
        if not found:
            found, value = "input" in err and kind != "missing", err.get("input")
        secret = secret_bearing(loc)
        if secret:
            for text in {str(value), *secret_values(value, loc)} if found else ():
                if len(text) >= 4:
                    msg = msg.replace(text, REDACTED)
        if kind == "missing" or not found:
            shown = hint
        elif isinstance(value, dict | list) and kind not in _MESSAGES:
            shown = ""  # the message names what is wrong inside; the whole mapping would only be noise
        elif secret:
            shown = f" (value not shown: {key_path(loc)} is secret-bearing)"
        else:
            text = json.dumps(redact(value, loc), default=str, ensure_ascii=False)
            shown = f" (got {text if len(text) <= 120 else text[:117] + '...'})"
        lines.append(f"{origin}: {key_path(loc)}: {msg}{shown}")
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
            f"{_origin(('promote_from',), sources, False)[0]}: promote_from: unknown environment "
            f"{settings.promote_from!r}; known: {', '.join(known)}"
        )
    return Environment(
        name=name, settings=settings, files=[p for p, _ in sources], layers=[d for _, d in sources]
    )


def withheld_variables(env: Environment) -> list[str]:
    """The environment variables that hold this environment's secrets: no child of baker gets them."""
    vp = env.settings.bake.vault_password
    names = [vp.env] if vp is not None and vp.env else []
    return names + [ref["env"] for _, ref in secret_refs(env.settings.deploy.variables) if ref.get("env")]


def redacted(env: Environment) -> dict[str, Any]:
    """The merged settings as JSON-able data; secrets appear only as where they come from."""
    data = redact(env.settings.model_dump(mode="json"))
    vp = env.settings.bake.vault_password
    if vp is not None:
        data["bake"]["vault_password"] = f"<secret from {vp.describe()}>"
    for loc, ref in secret_refs(env.settings.deploy.variables):
        where = data
        for part in loc[:-1]:
            where = where[part]
        where[loc[-1]] = f"<secret from {SecretRef.model_validate(ref).describe()}>"
    return data


def schema() -> dict[str, Any]:
    return {
        "baker.yml": ProjectSettings.model_json_schema(),
        "environments/<env>.yml": EnvironmentSettings.model_json_schema(),
    }
