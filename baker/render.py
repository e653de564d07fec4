"""Jinja2 -> Packer HCL2: the template of one environment's AMI, and the variables file beside it.

The template holds only what the environment decides (region, instance type, source image, disks,
tags, the playbook and its arguments), so it changes exactly when the recipe does; what changes
from build to build (version, recipe, timestamps, the local build host's port and key) lives in
the variables file. Neither holds a secret.

Every value reaches HCL through ``hcl``, the one quoting filter: a quote, backslash, newline,
``${`` or ``%{`` in a setting is escaped, so it reaches the AMI tag byte for byte and cannot
change the template around it. Jinja2 runs with StrictUndefined: a missing value is an error,
never an empty string.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baker import images, layers, package, plugins, provenance, recipe, runner
from baker.aws import AWS, Client
from baker.config import Environment, Project, SourceAMI
from baker.errors import ToolError, UsageError
from baker.hcl import literal
from baker.images import SourceImage
from baker.preflight import TEMPLATE, VAULT_CLIENT, check_project_files

if TYPE_CHECKING:  # imported when a template is rendered: a cache-hit bake renders none
    import jinja2

log = logging.getLogger("baker")

TEMPLATE_OUT = "ami.pkr.hcl"
VARIABLES_OUT = "ami.pkrvars.hcl"
#: Packer 1.7 introduced `packer { required_plugins }`; 1.6 rejects the block
REQUIRED_PLUGINS_SINCE = plugins.SINCE
#: characters EC2 accepts in an AMI name
_AMI_NAME_BAD = re.compile(r"[^A-Za-z0-9()\[\] ./'@_-]")
_PACKER_VERSION = re.compile(r"Packer v?(\d+)\.(\d+)\.(\d+)")


# ---------------------------------------------------------------- the one quoting filter (baker/hcl.py)


class HCL(str):
    """Text that ``hcl`` produced: the only kind of value the template may print."""

    __slots__ = ()


def hcl(value: Any) -> HCL:
    """Any value as an HCL2 literal: strings quoted and escaped, containers element by element.

    The only way values enter the template, so nothing in a setting can become HCL syntax.
    """
    return HCL(literal(value, "a Packer template"))


# ---------------------------------------------------------------- packer itself


def parse_packer_version(text: str) -> tuple[int, int, int]:
    match = _PACKER_VERSION.search(text)
    if not match:
        raise ToolError(
            "cannot read the version from `packer version`", tool="packer", output_tail=text.splitlines()[-5:]
        )
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def packer_version(binary: str = "packer", *, cache_dir: Path | None = None) -> tuple[int, int, int]:
    """The installed Packer's version: it decides whether the template may name its plugins.

    With ``cache_dir`` the answer is kept next to the build, keyed by the binary's path, size,
    mtime and inode, so a cache-hit bake does not start Packer at all.
    """
    path = Path(runner.which(binary) if os.sep not in binary else binary).resolve()
    st = path.stat()
    key = f"{path}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    memo = cache_dir / "packer-version.json" if cache_dir is not None else None
    if memo is not None:
        try:
            known = json.loads(memo.read_text())
            if known.get("key") == key:
                major, minor, patch = known["version"]
                return int(major), int(minor), int(patch)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    version = parse_packer_version(
        runner.output([str(path), "version"], env=packer_base_env(), stage="packer")
    )
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({"key": key, "version": list(version)}) + "\n")
    return version


def packer_base_env() -> dict[str, str]:
    """Packer must not phone home (checkpoint) nor colour its output."""
    env = dict(os.environ)
    env["CHECKPOINT_DISABLE"] = "1"
    env["PACKER_NO_COLOR"] = "1"
    return env


def validate(
    template: Path,
    variables: Path,
    *,
    cwd: Path,
    binary: str = "packer",
    syntax_only: bool = False,
    env: Mapping[str, str] | None = None,
) -> None:
    """`packer validate` on the rendered pair; its own words become the ToolError."""
    argv = [binary, "validate"]
    if syntax_only:
        argv.append("-syntax-only")
    argv += [f"-var-file={variables}", str(template)]
    result = runner.run(
        argv, cwd=cwd, env=env or packer_base_env(), check=False, capture=True, echo=False, stage="packer"
    )
    if result.returncode != 0:
        lines = [ln for ln in result.lines if ln.strip()]
        raise ToolError(
            f"packer validate rejected {template}",
            tool="packer",
            output_tail=lines[-20:],
            returncode=result.returncode,
        )


# ---------------------------------------------------------------- the source image


def resolve_source_ami(ec2: Client, source: SourceAMI) -> SourceImage:
    """The environment's ``bake.source_ami``, resolved by one DescribeImages call (baker.images)."""
    return images.resolve_source(ec2, source.model_dump(mode="json"))


# ---------------------------------------------------------------- rendering


def _only_quoted(value: Any) -> str:
    """Jinja2's finalize hook: every printed value must have gone through ``hcl``."""
    if isinstance(value, HCL):
        return value
    raise UsageError(f"packer template prints {value!r} without the |hcl filter; every value must be quoted")


def environment() -> jinja2.Environment:
    """Jinja2 as baker uses it: StrictUndefined, one filter, and a finalize hook that refuses any
    value printed without it (HTML autoescaping would be the wrong escaping for HCL)."""
    import jinja2

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - the output is HCL; `hcl` does its escaping
        finalize=_only_quoted,
    )
    env.filters["hcl"] = hcl
    return env


def render_text(source: str, context: Mapping[str, Any]) -> str:
    """Render a template text; a missing value is a UsageError naming it."""
    import jinja2

    try:
        return environment().from_string(source).render(**context)
    except jinja2.UndefinedError as exc:
        raise UsageError(f"packer template needs a value that was not given: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise UsageError(f"packer template syntax error at line {exc.lineno}: {exc.message}") from None


def template_path(project: Project) -> Path:
    path = project.path(project.settings.paths.packer) / TEMPLATE
    if not path.is_file():
        raise UsageError(f"packer template {path} not found (paths.packer in baker.yml)")
    return path


def _relative(project: Project, path: Path) -> str:
    """Paths in the template are relative to the project (packer runs there), so the same commit
    renders the same template on every CI runner."""
    try:
        return path.resolve().relative_to(project.root).as_posix()
    except ValueError:
        return str(path)


def ansible_arguments(project: Project, env: Environment, *, local: bool = False) -> list[str]:
    """The playbook's arguments: the environment's vars as JSON and the vault file (its client
    comes from ``vault_client``).

    The local build host has no network: apt works from what its root filesystem already has.
    """
    deb = project.app.deb
    bake = env.settings.bake
    # no environment name: the image is the same for every environment that shares these settings
    extra = {
        "baker_app": project.app.name,
        "baker_package": deb.package,
        "baker_service": deb.service,
        "baker_env_file": deb.env_file,
        **bake.ansible_vars,
    }
    if local:
        extra["baker_apt_update"] = False
    args = ["--extra-vars", json.dumps(extra, sort_keys=True, separators=(",", ":"))]
    if bake.vault_file:
        if bake.vault_password is None:
            raise UsageError(f"{env.name}: bake.vault_file is set but bake.vault_password is not")
        vault = project.path(bake.vault_file)
        if not vault.is_file():
            raise UsageError(f"{env.name}: bake.vault_file {vault} not found")
        args += ["--extra-vars", f"@{_relative(project, vault)}"]
    return args


def vault_client(project: Project, env: Environment) -> str | None:
    """The vault password client, when the environment has a vault. The template passes it as
    ``--vault-id <build id>@<client>``: the build id is a Packer variable (the rendered template
    stays the same from build to build) and is the label the client asks baker's handoff with."""
    if not env.settings.bake.vault_file:
        return None
    return _relative(project, project.path(project.settings.paths.ansible) / VAULT_CLIENT)


def ansible_env(project: Project, *, roles_path: Path | None = None) -> list[str]:
    cfg = project.path(project.settings.paths.ansible) / "ansible.cfg"
    out = ["ANSIBLE_FORCE_COLOR=0", "ANSIBLE_NOCOLOR=1", "ANSIBLE_RETRY_FILES_ENABLED=0"]
    if cfg.is_file():
        out.insert(0, f"ANSIBLE_CONFIG={_relative(project, cfg)}")
    return out + ([f"ANSIBLE_ROLES_PATH={_relative(project, roles_path)}"] if roles_path else [])


def template_context(
    project: Project,
    env: Environment,
    *,
    source: SourceImage,
    version: tuple[int, int, int],
    local_endpoint: str | None = None,
    layer: layers.Layer | None = None,
) -> dict[str, Any]:
    """Everything the template sees: the environment's settings (a layer's playbook and base AMI)."""
    bake = env.settings.bake
    layer_source = {"id": layer.source_ami, "filter": None} if layer and layer.source_ami else None
    playbook = layer.playbook if layer is not None else project.path(project.settings.paths.playbook)
    if not playbook.is_file():
        raise UsageError(f"playbook {playbook} not found (paths.playbook in baker.yml)")
    return {
        "app": project.app.name,
        "env": env.name,
        "required_plugins": version >= REQUIRED_PLUGINS_SINCE,
        "region": env.settings.aws.region,
        "instance_type": bake.instance_type,
        "source_ami": layer_source or bake.source_ami.model_dump(),
        "root_device": source.root_device,
        "vpc_id": bake.vpc_id,
        "subnet_id": bake.subnet_id,
        "ssh_username": bake.ssh_username,
        "description": f"{project.app.name} for {env.name}, baked by baker",
        "copy_to_regions": [r for r in bake.copy_to_regions if r != env.settings.aws.region],
        "share_with_accounts": list(bake.share_with_accounts),
        "encrypt_boot": bake.encrypt_boot,
        "kms_key_id": bake.kms_key_id,
        "volume_size": bake.volume_size,
        "tags": {k: v for k, v in bake.tags.items() if not k.startswith("baker:")},
        "playbook": _relative(project, playbook),
        "ansible_arguments": ansible_arguments(project, env, local=local_endpoint is not None),
        "vault_client": vault_client(project, env),
        "ansible_env": ansible_env(project, roles_path=layer.roles_path if layer is not None else None),
        "local": {"endpoint": local_endpoint} if local_endpoint else None,
    }


def render_template(project: Project, context: Mapping[str, Any]) -> str:
    return render_text(template_path(project).read_text(), context)


def render_variables(values: Mapping[str, Any]) -> str:
    """The variables file: one `name = value` per line, every value through ``hcl``."""
    lines = ["# Build-specific values for ami.pkr.hcl, written by baker. Nothing secret lives here."]
    for key, value in values.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ValueError(f"not a Packer variable name: {key!r}")
        if isinstance(value, Mapping):
            lines.append(f"{key} = {{")
            lines += [f"  {hcl(str(k))} = {hcl(v)}" for k, v in value.items()]
            lines.append("}")
        else:
            lines.append(f"{key} = {hcl(value)}")
    return "\n".join(lines) + "\n"


def ami_name(app: str, version: str, env: str, stamp: str) -> str:
    """`<app>-<version>-<env>-<UTC timestamp>`, with what EC2 refuses in a name made '-'."""
    return _AMI_NAME_BAD.sub("-", f"{app}-{version}-{env}-{stamp}")[:128]


def build_dir(project: Project, env: Environment) -> Path:
    return project.path(project.settings.paths.build) / env.name


@dataclass(frozen=True)
class Rendered:
    """A rendered template on disk; ``text`` is what the recipe hashes."""

    directory: Path
    template: Path
    variables: Path
    text: str
    packer_version: tuple[int, int, int]
    source: SourceImage

    def write_variables(self, values: Mapping[str, Any]) -> Path:
        self.variables.write_text(render_variables(values))
        return self.variables


def render(
    project: Project,
    env: Environment,
    *,
    source: SourceImage,
    version: tuple[int, int, int],
    out_dir: Path,
    local_endpoint: str | None = None,
    layer: layers.Layer | None = None,
) -> Rendered:
    """Render the environment's template into ``out_dir`` (the variables are written later)."""
    context = template_context(
        project, env, source=source, version=version, local_endpoint=local_endpoint, layer=layer
    )
    text = render_template(project, context)
    out_dir.mkdir(parents=True, exist_ok=True)
    template = out_dir / TEMPLATE_OUT
    template.write_text(text)
    return Rendered(
        directory=out_dir,
        template=template,
        variables=out_dir / VARIABLES_OUT,
        text=text,
        packer_version=version,
        source=source,
    )


def build_values(
    project: Project,
    env: Environment,
    pkg: package.Package,
    *,
    recipe: str,
    source: SourceImage,
    packer_version: tuple[int, int, int],
    session: Any = None,
    local: bool = False,
    built_at: str | None = None,
    build_id: str | None = None,
    layer: str | None = None,
) -> dict[str, Any]:
    """The variables file's values. ``session`` is the local build host's (None against AWS).
    ``layer`` "base": the image is named for its layer, not for the app version it was baked at."""
    built_at = built_at or provenance.iso(provenance.utc_now())
    stamp = built_at.replace("-", "").replace(":", "").replace("T", "").rstrip("Z")[:14]
    values: dict[str, Any] = {
        "ami_name": ami_name(project.app.name, layer or pkg.version, env.name, stamp),
        "deb_path": str(pkg.path),
        "deb_file": pkg.path.name,
        "build_id": build_id or "render",
        "build_tags": provenance.baked(
            app=project.app.name,
            version=pkg.version,
            git_sha=pkg.git_sha,
            deb_sha256=pkg.sha256,
            recipe=recipe,
            source_ami=source.id,
            baked_for=env.name,
            built_at=built_at,
            builder=provenance.builder(packer_version),
            ci=provenance.ci_url(),
        ),
    }
    if local or session is not None:
        values["ssh_port"] = session.port if session is not None else 22
        values["ssh_private_key_file"] = str(session.private_key_file) if session is not None else ""
    return values


@dataclass(frozen=True)
class Prepared:
    """Everything before Packer runs, the same for ``render`` and ``bake``: the .deb, the resolved
    source image, the recipe they make and the template for the environment, rendered into
    ``directory`` when first asked for (the recipe hashes the template's source: a cache hit renders
    nothing)."""

    pkg: package.Package
    source: SourceImage
    packer_version: tuple[int, int, int]
    recipe: str
    ec2: Client
    directory: Path
    renderer: Callable[[], Rendered] = field(repr=False, compare=False)
    #: the project files and directories checked before anything was built: (path, is a directory)
    checked: tuple[tuple[Path, bool], ...] = ()

    @functools.cached_property
    def rendered(self) -> Rendered:
        return self.renderer()

    def values(self, project: Project, env: Environment, **build: Any) -> dict[str, Any]:
        return build_values(
            project,
            env,
            self.pkg,
            recipe=self.recipe,
            source=self.source,
            packer_version=self.packer_version,
            **build,
        )


def prepare(
    project: Project,
    env: Environment,
    aws: AWS,
    *,
    local_endpoint: str | None = None,
    allow_dirty: bool = False,
    packer: str = "packer",
    packer_cache: bool = True,
) -> Prepared:
    """Package, render and hash: the one sequence ``render`` and ``bake`` share."""
    checked = check_project_files(
        project, env
    )  # every project file, before anything is built or AWS is asked
    out = build_dir(project, env)
    # botocore loads EC2's model while dpkg-deb runs: a cache hit is mostly these two waits
    with ThreadPoolExecutor(max_workers=1) as pool:
        ec2_client = pool.submit(aws.client, "ec2")
        pkg = package.build(project, out / "deb", allow_dirty=allow_dirty, reuse=True)
        ec2 = ec2_client.result()
    version = packer_version(packer, cache_dir=out.parent if packer_cache else None)
    source = resolve_source_ami(ec2, env.settings.bake.source_ami)
    digest = recipe.digest_for(
        project, env, deb=pkg.path, template=template_path(project).read_text(), source_ami=source.id
    )
    return Prepared(
        pkg=pkg,
        source=source,
        packer_version=version,
        recipe=digest,
        ec2=ec2,
        directory=out,
        renderer=lambda: render(
            project, env, source=source, version=version, out_dir=out, local_endpoint=local_endpoint
        ),
        checked=tuple(checked),
    )


class Render:
    """`baker render`: package, render the template and its variables for ENV, `packer validate`."""

    def __init__(
        self,
        project: Project,
        env: Environment,
        aws: AWS,
        *,
        local_endpoint: str | None = None,
        allow_dirty: bool = False,
        packer: str = "packer",
    ) -> None:
        self.allow_dirty = allow_dirty
        self.project = project
        self.env = env
        self.aws = aws
        self.local_endpoint = local_endpoint
        self.packer = packer

    def run(self) -> dict[str, Any]:
        prepared = prepare(
            self.project,
            self.env,
            self.aws,
            local_endpoint=self.local_endpoint,
            allow_dirty=self.allow_dirty,
            packer=self.packer,
            packer_cache=False,
        )
        rendered = prepared.rendered
        rendered.write_variables(
            prepared.values(self.project, self.env, local=self.local_endpoint is not None)
        )
        # without a build host session the local key file does not exist yet: check the syntax only
        syntax_only = self.local_endpoint is not None
        version = prepared.packer_version
        # Packer >= 1.7 validates only with the plugins the template names installed
        plugins.ensure(self.packer, version, rendered.template, cwd=self.project.root, env=packer_base_env())
        validate(
            rendered.template,
            rendered.variables,
            cwd=self.project.root,
            binary=self.packer,
            syntax_only=syntax_only,
        )
        return {
            "env": self.env.name,
            "template": str(rendered.template),
            "variables": str(rendered.variables),
            "packer_version": ".".join(map(str, version)),
            "required_plugins": version >= REQUIRED_PLUGINS_SINCE,
            "source_ami": prepared.source.id,
            "recipe": prepared.recipe,
            "validated": "syntax" if syntax_only else "full",
        }
