"""The local cloud's facade: ``up``, ``down``, ``status`` and how the rest of baker reaches it.

``up`` creates a loopback-only network namespace, starts the AWS emulator (baker.local.emulator)
inside it, and records in ``state.json`` what it started: the namespace, the endpoint and each
process's PID with its start time and command line, so that ``down`` ends only our own processes,
also after a crash. ``--local`` commands ``enter()`` the namespace and use ``aws()``.

State dir: $BAKER_LOCAL_DIR or /var/lib/baker/local; caches under $BAKER_CACHE_DIR or ~/.cache/baker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from baker import runner
from baker.aws import AWS
from baker.errors import BakerError, ToolError, UsageError
from baker.local import kernel, netns

if TYPE_CHECKING:
    from baker.local.buildhost import BuildHost

log = logging.getLogger("baker")

DEFAULT_NETNS = "baker-local"
HOST = "127.0.0.1"
PORT = 5000
DEFAULT_ACCOUNT = "123456789012"
STATE_FILE = "state.json"
READY_TIMEOUT = 60.0
T = TypeVar("T")


def resolve_state_dir(path: str | Path | None = None) -> Path:
    """The state dir: the given one, $BAKER_LOCAL_DIR, or /var/lib/baker/local."""
    return Path(path or os.environ.get("BAKER_LOCAL_DIR") or "/var/lib/baker/local")


def cache_dir() -> Path:
    return Path(os.environ.get("BAKER_CACHE_DIR") or Path.home() / ".cache" / "baker")


def _read_state(sdir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((sdir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise UsageError(f"{sdir / STATE_FILE} is not valid JSON ({exc}); run 'baker local down'") from exc


def _write_state(sdir: Path, state: dict[str, Any]) -> None:
    tmp = sdir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(sdir / STATE_FILE)


def _state(sdir: Path) -> dict[str, Any]:
    state = _read_state(sdir)
    if state is None:
        raise UsageError(f"the local cloud is not running (no {sdir / STATE_FILE}); run 'baker local up'")
    return state


# --------------------------------------------------------------------------- processes we started


def _stop(rec: dict[str, Any], what: str) -> bool:
    """End one recorded process by its PID (TERM, then KILL); False when it was not running."""
    if not kernel.ours(rec):
        return False
    log.info("stopping %s (pid %d)", what, int(rec["pid"]))
    return kernel.stop(rec)


# --------------------------------------------------------------------------- talking to the emulator


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` with its sockets inside the named namespace, without moving this process there."""
    if netns.inside(name):
        return fn()
    netns.require_root()
    return kernel.in_netns(netns.path(name), fn, name=f"in-{name}")


def _request(
    url: str, method: str = "GET", payload: dict[str, Any] | None = None, timeout: float = 10
) -> dict[str, Any]:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(  # noqa: S310 - the emulator's own http://127.0.0.1 URL
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            message = json.loads(body).get("error", body)
        except ValueError:
            message = body
        raise UsageError(f"the local cloud refused {method} {url}: {message}") from exc


def _call(
    state: dict[str, Any], path: str, method: str = "GET", payload: dict[str, Any] | None = None
) -> dict[str, Any]:
    url = state["endpoint"] + path
    try:
        return in_netns(state["netns"], lambda: _request(url, method, payload))
    except (urllib.error.URLError, OSError) as exc:
        raise ToolError(
            f"the local cloud's emulator does not answer at {url} ({exc}); "
            "run 'baker local status' or 'baker local up'",
            tool="emulator",
        ) from exc


def _wait_ready(state: dict[str, Any], rec: dict[str, Any], log_file: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    url = state["endpoint"] + "/_baker/health"
    while True:
        try:
            in_netns(state["netns"], lambda: _request(url, timeout=2))
            return
        except (urllib.error.URLError, OSError):
            pass
        if not kernel.ours(rec) or time.monotonic() > deadline:
            tail = log_file.read_text(errors="replace").splitlines()[-20:] if log_file.exists() else []
            why = "exited" if not kernel.ours(rec) else f"did not answer within {READY_TIMEOUT:.0f}s"
            raise ToolError(f"the emulator {why}; its log is {log_file}", tool="emulator", output_tail=tail)
        time.sleep(0.2)


# --------------------------------------------------------------------------- the build host


def _build_host_class() -> type[BuildHost] | None:
    try:
        from baker.local.buildhost import BuildHost
    except ImportError:
        return None
    return BuildHost


def build_host(path: str | Path | None = None) -> BuildHost:
    """The build host of the local cloud (Packer's SSH target)."""
    cls = _build_host_class()
    if cls is None:
        raise UsageError("this baker has no local build host (baker.local.buildhost is missing)")
    return cls(resolve_state_dir(path), cache_dir())


# --------------------------------------------------------------------------- the facade


def _ensure_rootfs(sdir: Path) -> str | None:
    """Build (or find cached) the build host's root filesystem, in this process's network."""
    cls = _build_host_class()
    if cls is None:
        log.info("no build host in this baker yet: skipping the root filesystem")
        return None
    return str(cls(sdir, cache_dir()).ensure_rootfs())


def up(
    state_dir: str | Path | None = None,
    netns_name: str | None = None,
    *,
    rootfs: bool = True,
    timings: dict[str, float] | None = None,
    iam: IAMSetup | None = None,
) -> dict[str, Any]:
    """Start the local cloud (harmless when it runs): namespace, emulator, build host's root fs.

    ``timings`` sets the emulator's health knobs (initial_seconds, refresh_timeout), also on a
    cloud that already runs. ``iam`` turns IAM enforcement on (with the example roles) or off,
    also on a cloud that already runs.
    """
    sdir = resolve_state_dir(state_dir)
    netns.require_root()
    started = time.monotonic()
    state = _read_state(sdir)
    name = netns_name or (state or {}).get("netns") or DEFAULT_NETNS
    if (
        state is not None
        and kernel.ours(state.get("pids", {}).get("emulator", {}))
        and netns.exists(state["netns"])
    ):
        if netns_name and netns_name != state["netns"]:
            raise UsageError(f"the local cloud in {sdir} already runs in namespace {state['netns']}")
        _call(state, "/_baker/health")
        if timings:
            _call(state, "/_baker/settings", "POST", timings)
        if iam is not None:
            _set_iam(sdir, state, iam)
        rootfs_path = _ensure_rootfs(sdir) if rootfs else None
        result = status(sdir)
        result.update(
            already_running=True, up_seconds=round(time.monotonic() - started, 2), rootfs=rootfs_path
        )
        return result
    if state is not None:
        log.info("cleaning up what a previous local cloud left behind")
        down(sdir)

    sdir.mkdir(parents=True, exist_ok=True)
    created = not netns.exists(name)
    netns.create(name)
    log_file = sdir / "emulator.log"
    emulator = [sys.executable, "-m", "baker.local.emulator", "--host", HOST, "--port", str(PORT),
                "--state-dir", str(sdir.resolve()), "--cache-dir", str(cache_dir().resolve())]  # fmt: skip
    for key, value in sorted((timings or {}).items()):
        emulator += [f"--{key.replace('_', '-')}", str(value)]
    argv = emulator if netns.inside(name) else netns.exec_prefix(name) + emulator
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    proc = runner.start(argv, cwd=sdir, env=env, log_file=log_file)
    # nsenter execs the emulator, so the PID is the emulator's; wait for the exec to show
    rec = kernel.record(proc.pid)
    for _ in range(50):
        if rec["cmdline"] == emulator:
            break
        time.sleep(0.05)
        rec = kernel.record(proc.pid)
    state = {
        "netns": name,
        "netns_created": created,
        "endpoint": f"http://{HOST}:{PORT}",
        "state_dir": str(sdir),
        "started_at": time.time(),
        "log": str(log_file),
        "pids": {"emulator": rec},
    }
    _write_state(sdir, state)
    try:
        _wait_ready(state, rec, log_file)
        if iam is not None:
            _set_iam(sdir, state, iam)
    except BakerError:
        down(sdir)
        raise
    emulator_seconds = time.monotonic() - started
    rootfs_path = _ensure_rootfs(sdir) if rootfs else None
    result = status(sdir)
    result.update(
        already_running=False,
        emulator_seconds=round(emulator_seconds, 2),
        up_seconds=round(time.monotonic() - started, 2),
        rootfs=rootfs_path,
    )
    return result


@dataclass
class IAMSetup:
    """``local up --enforce-iam``: the example's policies and the project's environments (whose
    accounts get the roles, whose state buckets and tables the bootstrap role makes)."""

    enforce: bool
    policies: Path | None = None
    environments: list[Any] = field(default_factory=list)
    table: str = "baker-state"


def _set_iam(sdir: Path, state: dict[str, Any], iam: IAMSetup) -> None:
    """Turn enforcement on (roles made, state bootstrapped, calls recorded afresh) or off."""
    from baker.local import roles

    if not iam.enforce:
        _call(state, "/_baker/iam", "POST", {"enforce": False})
        state.pop("iam", None)
        _write_state(sdir, state)
        return
    if iam.policies is None:
        raise UsageError("--enforce-iam needs the folder of the example policies")
    texts = roles.policies(iam.policies)
    accounts = roles.homes(iam.environments) or {roles.EXAMPLE_ACCOUNT: roles.EXAMPLE_REGION}

    def admin(account: str, region: str) -> AWS:
        return in_netns_aws(state, region, account)

    made = in_netns(state["netns"], lambda: roles.make(admin, texts, accounts))
    state["iam"] = {"enforce": True, "roles": made, "policies": str(iam.policies)}
    _write_state(sdir, state)
    _call(state, "/_baker/iam", "POST", {"enforce": True, "reset": True})

    def as_bootstrap(account: str, region: str) -> AWS:
        return in_netns_aws(state, region, account, group="bootstrap")

    in_netns(state["netns"], lambda: roles.bootstrap(as_bootstrap, iam.environments, iam.table))


def in_netns_aws(state: dict[str, Any], region: str, account: str, group: str | None = None) -> AWS:
    """An AWS on the cloud of ``state`` as an account's root, or as its role of ``group``."""
    credentials = {"aws_access_key_id": account, "aws_secret_access_key": "baker-local"}
    role = None
    if group is not None and state.get("iam", {}).get("enforce"):
        from baker.local.roles import role_arn

        role = role_arn(account, group)
    return AWS(region=region, endpoint_url=state["endpoint"], credentials=credentials, role_arn=role)


def iam_calls(state_dir: str | Path | None = None, *, reset: bool = False) -> dict[str, Any]:
    """What the emulator recorded of the roles' calls since enforcement was turned on."""
    state = _state(resolve_state_dir(state_dir))
    if reset:
        return _call(state, "/_baker/iam", "POST", {"reset": True})
    return _call(state, "/_baker/iam")


def down(
    state_dir: str | Path | None = None, netns_name: str | None = None, *, purge: bool = False
) -> dict[str, Any]:
    """Stop everything ``up`` started, unmount, remove the namespace, free the snapshots' blocks.
    Idempotent, also after a crash.

    ``purge``: the images (content of the AMIs baked here) go too; the emulator, which knew them,
    is gone, so they could only pile up.
    """
    sdir = resolve_state_dir(state_dir)
    netns.require_root()
    state = _read_state(sdir) or {}
    stopped: list[dict[str, Any]] = []
    errors: list[str] = []
    cls = _build_host_class()
    if cls is not None and sdir.exists():
        try:
            cls(sdir, cache_dir()).down()
        except BakerError as exc:
            errors.append(f"build host: {exc.message}")
    for what, rec in state.get("pids", {}).items():
        if _stop(rec, what):
            stopped.append({"name": what, "pid": rec["pid"]})
    instances_left: list[str] = []
    if sdir.exists():  # the emulator powers its instances off; after a crash, this does
        from baker.local import instances  # only here: --local commands start without it

        try:
            instances_left = instances.sweep(sdir)["stopped"]
        except BakerError as exc:
            errors.append(f"live instances: {exc.message}")
    unmounted: list[str] = []
    if sdir.exists():
        try:
            unmounted = kernel.unmount_under(sdir.resolve())
        except BakerError as exc:
            errors.append(exc.message)
    # the namespace goes when we created it; with no state left (a crash), the named or default one
    name = state.get("netns") or netns_name or DEFAULT_NETNS
    remove = state.get("netns_created", False) if state else not netns.inside(name)
    removed = None
    if remove and netns.exists(name):
        netns.delete(name)
        removed = name
    with contextlib.suppress(FileNotFoundError):
        (sdir / STATE_FILE).unlink()
    forgotten: list[str] = []
    if not errors:  # the snapshots' blocks and the images' disks: the emulator that knew them is gone
        dead = [p.name.removesuffix(".img") for p in (sdir / "snapshots").glob("snap-*.img")]
        kernel.remove_tree(sdir / "snapshots")
        # and what a bake fetched of them (an app layer's base): their ids died with the emulator
        from baker import ebs

        forgotten = ebs.forget(ebs.cache_dir(), dead)
        for disk in sdir.glob("images/*/disk.img"):
            disk.unlink()
    purged = 0
    if purge and (sdir / "images").is_dir() and not errors:
        purged = sum(1 for d in (sdir / "images").iterdir() if d.is_dir())
        kernel.remove_tree(sdir / "images")
    if errors:
        raise ToolError("the local cloud did not stop cleanly", tool="local", output_tail=errors)
    return {
        "state_dir": str(sdir),
        "stopped": stopped,
        "unmounted": unmounted,
        "netns_removed": removed,
        "was_running": bool(state),
        "instances_stopped_after_emulator": instances_left,
        "images_purged": purged,
        "fetched_snapshots_removed": forgotten,
    }


def status(state_dir: str | Path | None = None) -> dict[str, Any]:
    """What runs: emulator URL and memory, build host, images, instances."""
    sdir = resolve_state_dir(state_dir)
    state = _read_state(sdir)
    if state is None:
        return {"running": False, "state_dir": str(sdir)}
    rec = state.get("pids", {}).get("emulator", {})
    alive = kernel.ours(rec)
    result: dict[str, Any] = {
        "running": alive,
        "state_dir": str(sdir),
        "netns": state["netns"],
        "endpoint": state["endpoint"],
        "emulator_pid": rec.get("pid"),
        "emulator_rss_mib": round((kernel.rss_kib(rec.get("pid", 0)) or 0) / 1024, 1),
    }
    if alive:
        inv = _call(state, "/_baker/status")
        result["images"] = inv["images"]
        result["instances"] = inv["instances"]
        result["load_balancers"] = inv.get("load_balancers", [])
    iam = state.get("iam") or {}
    result["iam_roles"] = iam.get("roles", []) if iam.get("enforce") else None
    cls = _build_host_class()
    result["build_host"] = cls(sdir, cache_dir()).status() if cls is not None else None
    return result


def enter(state_dir: str | Path | None = None) -> None:
    """Move this process into the running cloud's namespace (no-op when already inside)."""
    state = _state(resolve_state_dir(state_dir))
    netns.enter(state["netns"])


def endpoint(state_dir: str | Path | None = None) -> str:
    return str(_state(resolve_state_dir(state_dir))["endpoint"])


def aws(
    region: str,
    account_id: str | None = None,
    state_dir: str | Path | None = None,
    *,
    group: str | None = None,
) -> AWS:
    """An AWS for the local cloud: its endpoint, and fake credentials whose key id is the account.

    moto treats a 12-digit access key id as the account id, which is how several accounts are emulated.
    With IAM enforced (``local up --enforce-iam``) and a verb ``group``, the account's role of that
    group is assumed (baker.local.roles), so baker, Packer and Terraform act as that role.
    """
    account = account_id or DEFAULT_ACCOUNT
    if not (len(account) == 12 and account.isdigit()):
        raise UsageError(f"account id {account!r} must be 12 digits")
    return in_netns_aws(_state(resolve_state_dir(state_dir)), region, account, group)


def listener(endpoint_url: str, listener_arn: str) -> dict[str, Any] | None:
    """A load balancer listener as the local cloud serves it (``url``: the loopback address it
    answers on, ``healthy_targets``: the live targets it forwards to); None when it does not answer.
    Called from inside the local cloud's network namespace (``--local``, the tests, the benches)."""
    found = _request(endpoint_url.rstrip("/") + "/_baker/status")
    return next((b for b in found.get("load_balancers", []) if b.get("listener_arn") == listener_arn), None)


def test_route(endpoint_url: str | None) -> Callable[[Any], tuple[str | None, str]]:
    """Blue/green's test route in the local cloud: its listeners answer on loopback ports of their
    own (baker/local/lb.py), found through the emulator; handed into Deploy by the CLI."""

    def route(colors: Any) -> tuple[str | None, str]:
        if not (colors.test_listener_arn and endpoint_url):
            return None, "no test listener"
        found = listener(endpoint_url, colors.test_listener_arn)
        if found is None:
            return None, "the local load balancer does not serve the test listener"
        if not found.get("healthy_targets"):
            # healthy by the emulator's API, yet no live target: instances of an AMI whose content
            # this local cloud does not hold are records only, and nothing answers for them
            return None, "no live instance behind the test route (record-only instances)"
        return str(found["url"]), ""

    return route


def set_health(ami_id: str, state: str | None, state_dir: str | Path | None = None) -> dict[str, Any]:
    """Make every target of instances of ``ami_id`` report ``state`` (None: back to normal)."""
    from baker.local.moto.state import HEALTH_STATES

    if state is not None and state not in HEALTH_STATES:
        raise UsageError(f"health state must be one of {', '.join(HEALTH_STATES)}, not {state!r}")
    return _call(
        _state(resolve_state_dir(state_dir)), "/_baker/health", "POST", {"ami_id": ami_id, "state": state}
    )


def settings(values: dict[str, float], state_dir: str | Path | None = None) -> dict[str, Any]:
    """Change the emulator's timing knobs (initial_seconds, refresh_timeout, tick_seconds)."""
    return _call(_state(resolve_state_dir(state_dir)), "/_baker/settings", "POST", values)
