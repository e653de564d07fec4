"""The thin wrapper over the ``terraform`` (or ``tofu``) binary.

Not python-terraform: 0.10.1 fails against Terraform 1.x. The argument lists are built by pure
functions (tested on their own); the ``Terraform`` class only adds the working directory, the
environment and error handling around ``runner.run``.

Each environment gets its own working directory under the build folder: the module's files are
copied there and ``TF_DATA_DIR`` points into it, so environments never share ``.terraform``
state and nothing is written into the source tree.

Variables go to Terraform in a JSON var file, never on a command line or in an environment. The
var file, the saved plan and Terraform's plan and apply output (all of which hold the values of
the variables) live in a private directory outside the build folder (``mkdtemp``: 0700), which is
removed when the plan is applied or discarded (the var file as soon as the plan is written); what
a killed baker leaves there is removed by a later plan of the same environment.
Values of secret-bearing variables (``config.secret_bearing``: a name that says password, secret,
token, ... and whatever a ``{env: NAME}`` / ``{file: PATH}`` reference under such a name resolves
to) are masked in every line baker relays or keeps and so in every error message, as written and
as Terraform quotes them.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baker import hcl, runner
from baker.config import BackendSettings
from baker.errors import ToolError, UsageError
from baker.plan import Change, Plan, parse_plan
from baker.terraform_lines import (
    applied_outputs,
    json_diagnostic,
    json_text,
    planned_change,
    progress_message,
    state_lock_id,
    text_diagnostics,
    ui_message,
)

log = logging.getLogger("baker")

#: where a provider mirror is looked for when baker.yml names none (the first that exists wins)
MIRROR_CANDIDATES = ("/opt/tf-plugins", "/usr/local/share/terraform/plugins", "/usr/share/terraform/plugins")
#: files of the module that belong in the working directory
MODULE_SUFFIXES = (".tf", ".tf.json", ".tfvars", ".tftpl")
LOCK_FILE = ".terraform.lock.hcl"
BACKEND_OVERRIDE = "baker_backend_override.tf"
PLAN_FILE = "baker.tfplan"
CLI_CONFIG = "baker.tfrc"
#: the warning every command gives while providers run in place (``Terraform.in_place``)
IN_PLACE_WARNING = "Warning: Provider development overrides are in effect"
#: in TF_DATA_DIR: what the last successful ``init`` was run for (see ``Terraform.init``)
INIT_STAMP = "baker-init.sha256"
#: Go's garbage collector target for Terraform and its providers unless GOGC is set already:
#: decoding the AWS provider's schema (every plan, show and apply) is mostly garbage, and 400
#: instead of Go's 100 takes a fifth off their CPU time for 7% more peak memory (bench/bench_terraform.py)
GOGC = "400"


# ---------------------------------------------------------------- pure argv builders


def _base(binary: str, work_dir: Path | str) -> list[str]:
    return [binary, f"-chdir={work_dir}"]


def init_argv(
    binary: str, work_dir: Path | str, backend_config: Mapping[str, str] | None = None
) -> list[str]:
    """``init`` with every backend setting given as ``-backend-config`` (never interactive).

    ``-reconfigure``: the state lives in the backend, never in the working directory, so there
    is nothing to migrate when a setting changes.
    """
    argv = [*_base(binary, work_dir), "init", "-input=false", "-no-color", "-reconfigure"]
    for key, value in (backend_config or {}).items():
        argv.append(f"-backend-config={key}={value}")
    return argv


def plan_argv(
    binary: str,
    work_dir: Path | str,
    *,
    var_file: Path | str,
    out: Path | str,
    lock_timeout: str = "60s",
    json_lines: bool = False,
) -> list[str]:
    """``json_lines``: machine-readable lines, whose ``planned_change`` ones name every change."""
    return [
        *_base(binary, work_dir),
        "plan",
        "-input=false",
        "-no-color",
        *(["-json"] if json_lines else []),
        f"-lock-timeout={lock_timeout}",
        f"-var-file={var_file}",
        f"-out={out}",
    ]


def show_argv(binary: str, work_dir: Path | str, plan: Path | str) -> list[str]:
    return [*_base(binary, work_dir), "show", "-json", "-no-color", str(plan)]


def apply_argv(
    binary: str, work_dir: Path | str, plan: Path | str, *, lock_timeout: str = "60s"
) -> list[str]:
    """Apply exactly the saved plan: no approval prompt, no re-planning, machine-readable lines."""
    return [
        *_base(binary, work_dir),
        "apply",
        "-input=false",
        "-no-color",
        "-json",
        f"-lock-timeout={lock_timeout}",
        str(plan),
    ]


def output_argv(binary: str, work_dir: Path | str) -> list[str]:
    return [*_base(binary, work_dir), "output", "-json", "-no-color"]


def backend_config(backend: BackendSettings, *, region: str, endpoint: str | None = None) -> dict[str, str]:
    """``-backend-config`` pairs of the S3 backend for one environment.

    With ``endpoint`` (the local cloud) the backend talks path-style to the emulator and skips
    the checks an emulator cannot answer; against real AWS none of that is set.
    """
    out = {"bucket": backend.bucket, "key": backend.key, "region": backend.region or region}
    if backend.use_lockfile:
        out["use_lockfile"] = "true"
    if backend.dynamodb_table:
        out["dynamodb_table"] = backend.dynamodb_table
    if endpoint:
        out.update(
            {
                "use_path_style": "true",
                "skip_credentials_validation": "true",
                "skip_requesting_account_id": "true",
                "skip_metadata_api_check": "true",
                "skip_region_validation": "true",
                "endpoints": "{s3=%s}" % hcl.string(endpoint),  # noqa: UP031 - HCL braces
            }
        )
    return out


def cli_config(
    mirror: Path | str, providers: Sequence[str], in_place: Mapping[str, Path | str] | None = None
) -> str:
    """A Terraform CLI configuration that installs ``providers`` from the filesystem mirror.

    Other providers still come from their registries, so a module that needs one more provider
    fails with the registry's own message rather than a mirror miss.

    ``in_place`` (the local cloud only, see ``Terraform.in_place``): provider -> the mirror's
    directory of its binary, run from there by every command after ``init`` (``dev_overrides``).
    """
    listed = ", ".join(hcl.string(p) for p in providers) or hcl.string("*/*/*")
    overrides = "".join(
        f"    {hcl.string(p)} = {hcl.string(str(d))}\n" for p, d in sorted((in_place or {}).items())
    )
    return (
        "# written by baker; Terraform reads it through TF_CLI_CONFIG_FILE\n"
        "provider_installation {\n"
        + ("  dev_overrides {\n" + overrides + "  }\n" if overrides else "")
        + "  filesystem_mirror {\n"
        f"    path    = {hcl.string(str(mirror))}\n"
        f"    include = [{listed}]\n"
        "  }\n"
        "  direct {\n"
        f"    exclude = [{listed}]\n"
        "  }\n"
        "}\n"
    )


def mirror_providers(mirror: Path) -> list[str]:
    """``host/namespace/type`` of every provider in a mirror laid out as Terraform expects."""
    found = []
    for type_dir in sorted(mirror.glob("*/*/*")):
        if type_dir.is_dir():
            host, namespace, name = type_dir.parts[-3:]
            found.append(f"{host}/{namespace}/{name}")
    return found


def platform_dir() -> str:
    """Terraform's name of this machine's platform in a provider mirror: ``linux_amd64``."""
    machine = os.uname().machine.lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "i386": "386"}.get(machine, machine)
    return f"{os.uname().sysname.lower()}_{arch}"


def mirror_in_place(mirror: Path, providers: Sequence[str]) -> dict[str, Path]:
    """provider -> the directory of its one unpacked binary for this platform in the mirror, for
    each provider the mirror holds exactly one version of (more than one: the lock file chooses)."""
    found = {}
    for provider in providers:
        versions = [d for d in (mirror / provider).iterdir() if d.is_dir()]
        if len(versions) != 1:
            continue
        binary_dir = versions[0] / platform_dir()
        if binary_dir.is_dir() and any(binary_dir.glob("terraform-provider-*")):
            found[provider] = binary_dir
    return found


def find_mirror(configured: str | None) -> Path | None:
    """The provider mirror to use: the configured one (must exist), else the first found."""
    if configured:
        path = Path(configured)
        if not path.is_dir():
            raise UsageError(f"terraform.plugin_mirror {configured!r} is not a directory")
        return path
    for candidate in MIRROR_CANDIDATES:
        if Path(candidate).is_dir():
            return Path(candidate)
    return None


# ---------------------------------------------------------------- secrets


def masks(secrets: Sequence[str]) -> list[str]:
    """What to mask for each secret: the value as written and as Terraform (or JSON) quotes it."""
    out: set[str] = set()
    for secret in secrets:
        if len(secret) < 4:
            continue  # as config.secret_values: masking "on" would mask half of every line
        out.add(secret)
        out.add(json.dumps(secret)[1:-1])
        out.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    return sorted(out, key=len, reverse=True)  # the longest first: no half-masked quoted form


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(directory: Path) -> None:
    try:
        shutil.rmtree(directory)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not remove Terraform's private directory %s: %s", directory, exc.strerror)


# ---------------------------------------------------------------- the wrapper


@dataclass
class Terraform:
    """One environment's Terraform: its working directory, environment and settings."""

    module_dir: Path
    work_dir: Path
    binary: str = "terraform"
    #: added to os.environ for every command (AWS region/endpoint); never logged
    env: dict[str, str] = field(default_factory=dict, repr=False)
    #: a context manager giving per-command variables (the AWS identity, see AWS.child_env)
    child_env: Callable[[], contextlib.AbstractContextManager[dict[str, str]]] | None = field(
        default=None, repr=False
    )
    backend: dict[str, str] | None = None
    mirror: Path | None = None
    #: the local cloud only: after ``init`` (which installs from the mirror and checks the lock
    #: file as always), every command runs the mirror's provider binary where it is
    #: (``dev_overrides``) instead of hashing its ~700 MB against the lock file first, ~0.6 s of
    #: CPU per command here. Against AWS never: there every command verifies the provider.
    in_place: bool = False
    timeout: float = 1800
    #: values that no line baker relays or keeps may show (secret-bearing variables, see ``plan``)
    secrets: list[str] = field(default_factory=list, repr=False)
    _prepared: bool = field(default=False, repr=False)
    #: what ``output`` last said; only an apply (or a new init) changes the state under the lock
    _outputs: dict[str, Any] | None = field(default=None, repr=False)

    # -- working directory

    def prepare(self) -> None:
        """Copy the module into the working directory and write baker's own CLI configuration."""
        if not self.module_dir.is_dir():
            raise UsageError(f"Terraform module {self.module_dir} not found (paths.terraform in baker.yml)")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        wanted = {
            p.name for p in self.module_dir.iterdir() if p.is_file() and p.name.endswith(MODULE_SUFFIXES)
        }
        if not any(n.endswith((".tf", ".tf.json")) for n in wanted):
            raise UsageError(f"{self.module_dir} has no Terraform files")
        for stale in self.work_dir.iterdir():
            if stale.is_file() and stale.name.endswith(MODULE_SUFFIXES) and stale.name not in wanted:
                stale.unlink()
        for name in wanted:
            shutil.copy2(self.module_dir / name, self.work_dir / name)
        if (self.module_dir / LOCK_FILE).is_file():
            shutil.copy2(self.module_dir / LOCK_FILE, self.work_dir / LOCK_FILE)
        if self.backend is None:
            # no backend configured: local state in the working directory
            (self.work_dir / BACKEND_OVERRIDE).write_text('terraform {\n  backend "local" {}\n}\n')
        if self.mirror is not None:
            providers = mirror_providers(self.mirror)
            in_place = mirror_in_place(self.mirror, providers) if self.in_place else {}
            (self.work_dir / CLI_CONFIG).write_text(cli_config(self.mirror, providers, in_place))
        self._prepared = True

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env["TF_IN_AUTOMATION"] = "1"
        env["TF_INPUT"] = "0"
        env["TF_DATA_DIR"] = str(self.work_dir / ".terraform")
        env.setdefault("GOGC", GOGC)
        # no version check against checkpoint-api.hashicorp.com from a deploy (CI, air-gapped runners)
        env.setdefault("CHECKPOINT_DISABLE", "1")
        if self.mirror is not None:
            env["TF_CLI_CONFIG_FILE"] = str(self.work_dir / CLI_CONFIG)
        return env

    # -- commands

    def _run(
        self,
        what: str,
        argv: list[str],
        *,
        on_line: Callable[[str], None] | None = None,
        json_lines: bool = False,
        capture: bool = False,
        output_file: Path | None = None,
    ) -> runner.Result:
        """``output_file``: the commands that hold the state lock (plan, apply) write to a file, not
        a pipe: killed outright, baker leaves them to finish (and unlock) instead of breaking them
        halfway with a closed pipe."""
        if not self._prepared:
            self.prepare()
        errors: list[str] = []

        def each(line: str) -> None:
            if json_lines:
                diag = json_diagnostic(line)
                if diag:
                    errors.append(diag)
            if on_line is not None:
                on_line(line)

        with self.child_env() if self.child_env is not None else contextlib.nullcontext({}) as identity:
            result = runner.run(
                argv,
                stage=f"terraform {what}",
                env={**self.environ(), **identity},
                timeout=self.timeout,
                check=False,
                capture=capture,
                on_line=each,
                echo=False,
                tail=60,
                output_file=output_file,
                redact=masks(self.secrets),
            )
        if result.returncode != 0:
            tail = result.lines[-60:]
            found = errors or text_diagnostics(tail)
            message = f"terraform {what} failed" + (": " + "; ".join(found) if found else "")
            lock_id = state_lock_id(tail)
            details: dict[str, Any] = {"diagnostics": found}
            if lock_id:
                # a Terraform killed mid-apply leaves its state lock behind; say what to do
                message += (
                    f". The Terraform state is locked (lock {lock_id}): if no Terraform of this environment "
                    f"runs any more (one was killed), release it with: {self.binary} -chdir={self.work_dir} "
                    f"force-unlock -force {lock_id}"
                )
                details["state_lock_id"] = lock_id
            raise ToolError(
                message,
                tool="terraform",
                output_tail=[] if found else tail[-20:],
                returncode=result.returncode,
                details=details,
            )
        return result

    def _init_inputs(self) -> str:
        """What ``init`` depends on: the binary, the backend settings, the CLI configuration and
        every file of the module in the working directory (providers, modules, the lock file)."""
        digest = hashlib.sha256()
        binary = shutil.which(self.binary) or self.binary
        try:
            st = os.stat(binary)
            digest.update(f"{binary}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        except OSError:
            digest.update(f"{binary}\0".encode())
        digest.update(json.dumps(init_argv(self.binary, self.work_dir, self.backend)).encode())
        for path in sorted(self.work_dir.iterdir()):
            if path.is_file() and (
                path.name.endswith(MODULE_SUFFIXES) or path.name in (LOCK_FILE, CLI_CONFIG)
            ):
                digest.update(f"\0{path.name}\0".encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()

    def init(self) -> None:
        """``terraform init``, unless the working directory was initialized for exactly these
        inputs already (``_init_inputs``): each init hashes the provider binary, reads the backend
        and installs the providers again, seconds per command to get the same directory back."""
        self._outputs = None
        if not self._prepared:
            self.prepare()
        stamp = self.work_dir / ".terraform" / INIT_STAMP
        wanted = self._init_inputs()
        try:
            if stamp.read_text().strip() == wanted:
                log.debug(
                    "terraform init: %s is initialized for this module and backend already", self.work_dir
                )
                return
        except OSError:
            pass
        stamp.unlink(missing_ok=True)
        self._run(
            "init",
            init_argv(self.binary, self.work_dir, self.backend),
            on_line=lambda line: log.debug("[terraform init] %s", line),
        )
        # as init left it: a first init writes the lock file that the next one will find
        stamp.write_text(self._init_inputs() + "\n")

    def _private_prefix(self) -> str:
        """Private directories of this working directory's runs: ``baker-terraform-<hash>-...``."""
        digest = hashlib.sha256(str(self.work_dir.resolve()).encode()).hexdigest()[:12]
        return f"baker-terraform-{digest}-"

    def _private(self) -> Path:
        """A private (0700) directory for one run, named for this process: ``<prefix><pid>-...``."""
        return Path(tempfile.mkdtemp(prefix=f"{self._private_prefix()}{os.getpid()}-"))

    def _sweep_private(self) -> None:
        """A baker killed between plan and apply leaves its private directory (the var file, the
        plan): the next plan of the same environment removes those whose baker is gone, or that
        are older than Terraform's timeout (a run of a live baker may be going on now, such as a
        deploy while a --dry-run plans)."""
        stale = time.time() - self.timeout
        prefix = self._private_prefix()
        for path in Path(tempfile.gettempdir()).glob(prefix + "*"):
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            owner = path.name.removeprefix(prefix).split("-", 1)[0]
            if st.st_mtime < stale or not (owner.isdigit() and _alive(int(owner))):
                log.info("removing %s, left by a Terraform run of this environment whose baker died", path)
                _remove(path)

    @contextlib.contextmanager
    def var_file(self, variables: Mapping[str, Any], directory: Path | None = None) -> Iterator[Path]:
        """Variables in a 0600 JSON file in a private directory (never on the command line, nor in
        the build folder), removed when done."""
        own = directory is None
        where = self._private() if directory is None else directory
        path = where / "baker.tfvars.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(dict(variables), fh)
            yield path
        finally:
            path.unlink(missing_ok=True)
            if own:
                _remove(where)

    def plan(self, variables: Mapping[str, Any], *, secrets: Sequence[str] = (), detail: bool = True) -> Plan:
        """Write a saved plan for ``variables`` and read it back through ``show -json``.

        ``secrets``: values of ``variables`` that must never be shown; masked from here on in
        every line of this Terraform's commands. The plan (which holds every value) is written
        into a private directory that ``apply`` or ``discard`` removes.

        ``detail=False``: the changes as the plan's own ``-json`` lines name them (address, type,
        action, reason: what the plan gate reads), without the attributes that only ``show -json``
        gives; one Terraform run (and provider schema load) less, for a plan nobody reads."""
        self.secrets = sorted({*self.secrets, *(s for s in secrets if s)})
        self._sweep_private()
        private = self._private()
        out = private / PLAN_FILE
        named: list[Change] = []

        def each(line: str) -> None:
            if detail:
                log.debug("[terraform plan] %s", line)
                return
            change = planned_change(line)
            if change is not None:
                named.append(change)
            log.debug("[terraform plan] %s", ui_message(line))

        try:
            with self.var_file(variables, private) as vf:
                self._run(
                    "plan",
                    plan_argv(self.binary, self.work_dir, var_file=vf, out=out, json_lines=not detail),
                    on_line=each,
                    json_lines=not detail,
                    output_file=private / "terraform-plan.log",
                )
            (private / "terraform-plan.log").unlink(missing_ok=True)
            if not detail:
                return Plan(path=out, changes=tuple(named))
            shown = self._run("show", show_argv(self.binary, self.work_dir, out), capture=True)
            try:
                document = json.loads(json_text(shown.lines))
            except ValueError as exc:
                raise ToolError(
                    "terraform show -json printed no JSON plan",
                    tool="terraform",
                    output_tail=shown.lines[-10:],
                ) from exc
        except BaseException:
            _remove(private)
            raise
        return parse_plan(document, out)

    def apply(self, plan: Plan) -> None:
        """Apply exactly the saved plan, each progress line to stderr as it comes."""

        said: list[dict[str, Any]] = []

        def each(line: str) -> None:
            text = progress_message(line)
            if text and self.in_place and text.startswith(IN_PLACE_WARNING):
                log.debug("[terraform] %s", text)  # what in_place asked for: not news to anyone
            elif text:
                log.info("[terraform] %s", text)
            outputs = applied_outputs(line)
            if outputs is not None:
                said.append(outputs)

        self._outputs = None
        try:
            self._run(
                "apply",
                apply_argv(self.binary, self.work_dir, plan.path),
                on_line=each,
                json_lines=True,
                output_file=plan.path.parent / "terraform-apply.log",
            )
        finally:
            self._outputs = None  # also a failed or interrupted apply may have changed the state
            self.discard(plan)
        if said:
            # the apply's own last word on the outputs: no second read of the state
            self._outputs = said[-1]

    def discard(self, plan: Plan) -> None:
        """Forget a plan (applied, or not to be applied): its private directory goes with it."""
        plan.path.unlink(missing_ok=True)
        if plan.path.parent.name.startswith("baker-terraform-"):
            _remove(plan.path.parent)

    def outputs(self) -> dict[str, Any]:
        """The root module's outputs. Read once per state: a deploy asks several times (before the
        plan, for the rollout's watch, for what is live) and each ``terraform output`` reads the
        whole state from its backend; only ``apply`` and ``init`` change what it would say."""
        if self._outputs is None:
            result = self._run("output", output_argv(self.binary, self.work_dir), capture=True)
            try:
                raw = json.loads(json_text(result.lines) or "{}")
            except ValueError as exc:
                raise ToolError(
                    "terraform output -json printed no JSON", tool="terraform", output_tail=result.lines[-10:]
                ) from exc
            self._outputs = {k: v.get("value") for k, v in raw.items() if isinstance(v, dict)}
        return copy.deepcopy(self._outputs)
