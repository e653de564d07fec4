"""baker demo -e ENV: the whole story on the local cloud, with the real Packer, Ansible and Terraform.

1. start the local cloud from an empty account (a running one is restarted);
2. release: package, bake, first deploy, wait for a healthy fleet;
3. bake again: the recipe is unchanged, so a cache hit (no Packer run);
4. a new AMI rolled out: every instance replaced, health-gated;
5. an AMI whose instances never turn healthy: the rollout fails and baker rolls back (exit 4 of deploy).

The local cloud is left running; ``baker local down`` stops it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import click

from baker.cli.app import App, complete_environment
from baker.errors import BakerError, RolledBack

log = logging.getLogger("baker")


def render(result: dict[str, Any]) -> str:
    lines = [f"{s['step']}: {s['said']}" for s in result["steps"]]
    lines += [
        f"demo done in {result['seconds']:.0f} s; the local cloud still runs:",
        f"  baker --local config show -e {result['env']}",
        "  baker local status",
        "  baker local down        # stops it",
    ]
    return "\n".join(lines)


class DemoFailed(BakerError):
    """The story did not go as told: a stage answered something other than the demo expects."""

    exit_code = 1


@click.command("demo")
@click.option(
    "-e",
    "--env",
    "env_name",
    default="dev",
    show_default=True,
    help="environment name",
    shell_complete=complete_environment,
)
@click.option("--allow-dirty", is_flag=True, help="package uncommitted changes (the version is marked dirty)")
@click.pass_obj
def demo(app: App, env_name: str, allow_dirty: bool) -> None:
    """Run the whole story on the local cloud: release, cache hit, roll forward, automatic rollback."""
    from baker.bake import Bake
    from baker.deploy import Deploy
    from baker.local import cloud

    started = time.monotonic()
    env = app.environment(env_name)  # bad configuration stops the demo before anything starts
    steps: list[dict[str, Any]] = []

    def step(name: str, said: str, **facts: Any) -> None:
        steps.append({"step": name, "said": said, **facts})
        log.info("== %s: %s", name, said)

    if cloud.status().get("running"):
        log.info("== a local cloud runs already: restarting it, so the demo starts from an empty account")
        cloud.down()
    info = cloud.up()
    step("local up", f"emulator {info['endpoint']} in network namespace {info['netns']}")
    cloud.enter()
    app.local = True
    aws = app.aws(env)
    build_host = cloud.build_host()

    def bake(force: bool = False) -> dict[str, Any]:
        return Bake(app.project, env, aws, build_host=build_host, allow_dirty=allow_dirty).run(force=force)

    def deploy(ami_id: str) -> dict[str, Any]:
        return Deploy(app.project, env, aws, local=True).run(ami_id)

    first = bake()
    released = deploy(first["ami_id"])
    step(
        "release",
        f"baked {first['ami_id']} (version {first['version']}, recipe {first['recipe'][:12]}) "
        f"and the fleet is {released['outcome']} on it",
        ami_id=first["ami_id"],
        version=first["version"],
        outcome=released["outcome"],
    )

    again = bake()
    if not again["cached"] or again["ami_id"] != first["ami_id"]:
        raise DemoFailed(f"the unchanged recipe was baked again ({again['ami_id']}) instead of a cache hit")
    step("bake again", f"cache hit: {again['ami_id']}, no Packer run ({again['duration']:.2f} s)")

    new = bake(force=True)
    forward = deploy(new["ami_id"])
    step(
        "roll forward",
        f"{new['ami_id']} rolled out, every instance replaced, fleet {forward['outcome']}",
        ami_id=new["ami_id"],
        outcome=forward["outcome"],
    )

    bad = bake(force=True)
    cloud.set_health(bad["ami_id"], "unhealthy")
    log.info("== %s: its instances will never pass the health check", bad["ami_id"])
    try:
        deploy(bad["ami_id"])
    except RolledBack as exc:
        step(
            "automatic rollback",
            f"{bad['ami_id']} failed its health gate ({exc.details.get('reason')}); rolled back: "
            f"{exc.details['rollback']['ami_id']} is live and healthy again (deploy exits {exc.exit_code})",
            ami_id=bad["ami_id"],
            live=new["ami_id"],
            exit_code=exc.exit_code,
        )
    else:
        raise DemoFailed(f"the unhealthy {bad['ami_id']} was deployed without a rollback")
    app.emit({"env": env.name, "steps": steps, "seconds": round(time.monotonic() - started, 1)}, render)
