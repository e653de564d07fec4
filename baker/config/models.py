"""Typed configuration: ``baker.yml`` for the project, ``environments/*.yml`` per environment.

``defaults.yml`` and then ``<env>.yml``, merged by the one rule written down in loader.py.

Everything is validated at load time; the first problem becomes one ConfigError naming the file,
the key path and the offending value. Nothing runs on an invalid configuration.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from baker.config.keys import key_path, lookup
from baker.config.loader import merge, read_yaml
from baker.config.messages import describe, message, origin_of
from baker.config.secrets import VARIABLES, SecretRef, redact, secret_refs
from baker.config.types import (
    AMI_ID,
    AccountId,
    AccountIds,
    Duration,
    EnvValues,
    InstanceType,
    KmsKey,
    Model,
    PlainData,
    Region,
    Regions,
    SubnetId,
    Tags,
    VpcId,
)
from baker.errors import ConfigError
from baker.layout import DEFAULTS_FILE, ENV_DIR, ENV_NAME, PROJECT_FILE

# Debian policy: package names are lowercase alphanumerics and + - . , at least two characters
DEB_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


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


class AWSSettings(Model):
    region: Region = Field(description="AWS region, e.g. eu-west-1")
    account_id: AccountId = Field(description="12-digit AWS account id of this environment")
    profile: str | None = Field(None, description="named profile (local credentials)")
    role_arn: str | None = Field(None, description="role to assume for this environment")


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
        if self.id and not AMI_ID.match(self.id):
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
    instance_type: InstanceType = "t3.micro"
    source_ami: SourceAMI
    vpc_id: VpcId | None = None
    subnet_id: SubnetId | None = None
    ssh_username: str = "admin"
    encrypt_boot: bool = True
    kms_key_id: KmsKey | None = None
    volume_size: int = Field(8, ge=1, le=16384, description="root volume GiB")
    copy_to_regions: Regions = Field(default_factory=list)
    share_with_accounts: AccountIds = Field(default_factory=list)
    ansible_vars: PlainData = Field(default_factory=dict, description="extra vars for the playbook")
    vault_file: str | None = Field(None, description="Ansible Vault encrypted vars file, relative to project")
    vault_password: SecretRef | None = Field(None, description="where the vault password comes from")
    tags: Tags = Field(default_factory=dict, description="extra tags on the AMI")
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

    @field_validator("ssh_username")
    @classmethod
    def _ssh_user(cls, v: str) -> str:
        if not re.match(r"^[a-z_][a-z0-9_.-]*$", v):
            raise ValueError(f"{v!r} is not a user name")
        return v


class BackendSettings(Model):
    bucket: str
    key: str
    region: Region | None = None
    use_lockfile: bool = True
    dynamodb_table: str | None = None


class DeploySettings(Model):
    backend: BackendSettings | None = Field(None, description="Terraform S3 backend; none = local state")
    variables: PlainData = Field(default_factory=dict, description="Terraform input variables")
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
    keep_previous: Duration = Field(
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
        for loc, ref in secret_refs(v, VARIABLES):
            try:
                SecretRef.model_validate(ref)
            except ValidationError as exc:
                # the reference's own words (they never hold its value), under the user's key path
                why = "; ".join(message(e) for e in exc.errors())
                raise ValueError(f"{key_path(loc)}: {why}") from None
        return v

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

    env: EnvValues = Field(
        default_factory=dict,
        description="variables of the app's runtime environment file (app.deb.runtime_env_file)",
    )


class PromotionSettings(Model):
    min_soak: Duration = Field(
        0,
        ge=0,
        description="how long the AMI must have been live and healthy in promote_from before promote "
        "takes it (seconds, or 30m, 2h, 1d)",
    )


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
            if lookup(data, key)[0]:
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


def load_project(root: str | Path) -> Project:
    root = Path(root).resolve()
    path = root / PROJECT_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: not found; is --project ({root}) a baker project?")
    data = read_yaml(path)
    try:
        settings = ProjectSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, [(path, data)], data)) from None
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
        raise ConfigError(describe(exc, sources, merged)) from None
    if settings.promote_from is not None and settings.promote_from not in known:
        raise ConfigError(
            f"{origin_of(('promote_from',), sources, False)[0]}: promote_from: unknown environment "
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
