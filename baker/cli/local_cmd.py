"""baker local up|down|status|health: the local cloud (AWS emulator and build host on this machine)."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App

STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar="BAKER_LOCAL_DIR",
    show_default="$BAKER_LOCAL_DIR or /var/lib/baker/local",
    help="where the local cloud keeps its state",
)


@click.group("local")
def local() -> None:
    """The local cloud: run the whole pipeline on this machine, without an AWS account."""


def _mib(n: int | None) -> str:
    return f"{(n or 0) / 2**20:.0f} MiB"


def _render_status(d: dict[str, Any]) -> str:
    if not d.get("running") and "endpoint" not in d:
        return f"the local cloud is not running (state dir {d['state_dir']})"
    lines = [
        f"emulator:   {d['endpoint']} in network namespace {d['netns']} "
        f"({'running' if d['running'] else 'NOT running'}, pid {d['emulator_pid']}, "
        f"{d['emulator_rss_mib']} MiB)",
    ]
    bh = d.get("build_host")
    if bh:
        rootfs = bh.get("rootfs") or {}
        built = f"built, {_mib(rootfs.get('size_bytes'))}" if rootfs.get("built") else "not built yet"
        running = [s for s in bh.get("sessions", []) if s.get("running")]
        lines.append(f"build host: root fs {built}; {len(running)} session(s) running")
        for s in running:
            lines.append(
                f"  {s['kind']} {s['id']} {s.get('ami_id') or ''} ssh {s['user']}@127.0.0.1:{s['port']}"
            )
    else:
        lines.append("build host: not available in this baker")
    images = d.get("images", [])
    lines.append(f"images:     {len(images)}")
    for i in images:
        health = f"  health forced {i['health']} (fault injection)" if i.get("health") else ""
        health += "" if i.get("content") else "  (no content here: its instances are records)"
        lines.append(
            f"  {i['ami_id']}  {i['account']} {i['region']}  {i['name']}  {i.get('version') or ''}{health}"
        )
    instances = d.get("instances", [])
    live = [i for i in instances if i.get("live")]
    lines.append(f"instances:  {len(instances)} ({len(live)} live)")
    for i in instances:
        how = (
            f"live, container pid {i.get('container_pid')}, {i.get('rss_mib', 0)} MiB"
            if i.get("live")
            else i.get("note", "record only")
        )
        lines.append(f"  {i['instance_id']}  {i['region']}  {i['ami_id']}  {i['state']}  {i['health']}")
        lines.append(f"    {how}")
    balancers = d.get("load_balancers", [])
    if balancers:
        lines.append(
            f"load balancers: {len(balancers)} (inside the namespace: ip netns exec {d['netns']} curl URL)"
        )
    for b in balancers:
        lines.append(f"  {b['dns_name']}  {b['url']}  {len(b['healthy_targets'])} healthy target(s)")
    if d.get("iam_roles"):
        lines.append(f"IAM enforced: --local commands assume these roles ({len(d['iam_roles'])})")
        lines += [f"  {arn}" for arn in d["iam_roles"]]
    return "\n".join(lines)


@local.command("up")
@STATE_DIR
@click.option("--netns", "netns_name", default=None, help="network namespace name (default baker-local)")
@click.option("--no-rootfs", is_flag=True, help="do not build the build host's root filesystem now")
@click.option(
    "--initial-seconds",
    type=click.FloatRange(min=0),
    default=None,
    help="how long a new target reports 'initial' before 'healthy' [default: 3]",
)
@click.option(
    "--refresh-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="how long an instance refresh waits on unhealthy replacements before it fails [default: 30]",
)
@click.option(
    "--max-instances",
    type=click.IntRange(min=0),
    default=None,
    help="live instances (containers booting their image) at most [default: 12]",
)
@click.option(
    "--enforce-iam/--no-enforce-iam",
    default=None,
    help="evaluate IAM policies: every --local command runs as the example role of its verb group "
    "(made in each account of the project's environments) [default: unchanged, off at start]",
)
@click.option(
    "--iam-policies",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    show_default="examples/iam of the project",
    help="the policies of the roles --enforce-iam makes",
)
@click.pass_obj
def up(
    app: App,
    state_dir: str | None,
    netns_name: str | None,
    no_rootfs: bool,
    initial_seconds: float | None,
    refresh_timeout: float | None,
    max_instances: int | None,
    enforce_iam: bool | None,
    iam_policies: str | None,
) -> None:
    """Start the local cloud (harmless when it already runs)."""
    from pathlib import Path

    from baker.local import cloud

    iam = None
    if enforce_iam is not None:
        iam = cloud.IAMSetup(enforce=enforce_iam)
        if enforce_iam:
            project = app.project
            iam.policies = Path(iam_policies) if iam_policies else Path(app.project_dir) / "examples" / "iam"
            iam.environments = [project.environment(n) for n in project.environment_names()]
            iam.table = project.settings.state.table

    timings = {
        "initial_seconds": initial_seconds,
        "refresh_timeout": refresh_timeout,
        "max_instances": max_instances,
    }
    result = cloud.up(
        state_dir,
        netns_name,
        rootfs=not no_rootfs,
        timings={k: v for k, v in timings.items() if v is not None},
        iam=iam,
    )
    app.emit(result, lambda d: ("already running\n" if d.get("already_running") else "") + _render_status(d))


@local.command("down")
@STATE_DIR
@click.option("--netns", "netns_name", default=None, help="network namespace to remove when no state is left")
@click.option("--purge", is_flag=True, help="remove the images baked in this local cloud too")
@click.pass_obj
def down(app: App, state_dir: str | None, netns_name: str | None, purge: bool) -> None:
    """Stop everything the local cloud started, unmount, remove its namespace (also after a crash)."""
    from baker.local import cloud

    result = cloud.down(state_dir, netns_name, purge=purge)
    app.emit(
        result,
        lambda d: (
            f"stopped {len(d['stopped'])} process(es), unmounted {len(d['unmounted'])}, "
            f"namespace {d['netns_removed'] or 'kept'}"
        ),
    )


@local.command("status")
@STATE_DIR
@click.pass_obj
def status(app: App, state_dir: str | None) -> None:
    """What runs: emulator URL and memory, build host, images, instances."""
    from baker.local import cloud

    app.emit(cloud.status(state_dir), _render_status)


@local.command("health")
@STATE_DIR
@click.option("--ami", "ami_id", required=True, help="the AMI whose instances' targets are meant")
@click.option(
    "--state",
    "health",
    required=True,
    type=click.Choice(["initial", "healthy", "unhealthy", "reset"]),
    help="what their targets report from now on (reset: back to the real checks, or the timer)",
)
@click.pass_obj
def health(app: App, state_dir: str | None, ami_id: str, health: str) -> None:
    """Fault injection: make every target of an AMI's instances report a state, whatever its checks say.

    Live instances get their health from real checks of the target group's path and port; instances
    that are only records from a timer (initial, then healthy). This override beats both.
    """
    from baker.local import cloud

    result = cloud.set_health(ami_id, None if health == "reset" else health, state_dir)
    app.emit(
        result,
        lambda d: f"{d['ami_id']}: targets report {d['state'] or 'what their checks say'} (fault injection)",
    )
