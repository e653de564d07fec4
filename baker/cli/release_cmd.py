"""baker release -e ENV: bake (or reuse the cached AMI), then deploy it. The one line a CI job runs."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App, complete_environment
from baker.cli.deploy_cmd import render as render_deploy
from baker.cli.deploy_cmd import rollout_options


def render(result: dict[str, Any]) -> str:
    bake = result.get("bake", {})
    cached = " (cached)" if bake.get("cached") else ""
    lines = [f"baked {bake.get('ami_id')}{cached}"]
    verified = result.get("verify")
    if verified:
        how = (
            "already verified"
            if verified.get("already")
            else f"{len(verified['checks'])} smoke check(s) passed"
        )
        lines.append(f"verified: {how}")
    return "\n".join(lines) + "\n" + render_deploy(result)


@click.command("release")
@click.option(
    "-e", "--env", "env_name", required=True, help="environment name", shell_complete=complete_environment
)
@rollout_options
@click.option("--force", is_flag=True, help="bake even when an AMI of the same recipe exists")
@click.option("--dry-run", is_flag=True, help="say what would be baked and deployed; change nothing")
@click.option("--allow-dirty", is_flag=True, help="package uncommitted changes (the version is marked dirty)")
@click.pass_obj
def release(
    app: App,
    env_name: str,
    timeout: int | None,
    no_rollback: bool,
    allow_replace: bool,
    force: bool,
    dry_run: bool,
    allow_dirty: bool,
) -> None:
    """Bake ENV's AMI (a cache hit when the recipe is unchanged), then deploy it."""
    from baker.deploy import Options
    from baker.release import Release

    env = app.environment(env_name)
    build_host = None
    verify = None
    reach = None
    if app.local:
        from baker.local import cloud
        from baker.local.instances import LocalReach

        build_host = cloud.build_host()
        reach = LocalReach(cloud.resolve_state_dir())
    if app.project.settings.smoke_checks:
        from baker.verify import Verify

        verify = Verify(app.project, env, app.aws(env, "bake"), reach=reach)
    stage = Release(
        app.project,
        env,
        app.aws(env, "bake"),
        local=app.local,
        build_host=build_host,
        allow_dirty=allow_dirty,
        verify=verify,
        deploy=app.deploy(env),
    )
    options = Options(timeout=timeout, rollback=not no_rollback, allow_replace=allow_replace)
    app.emit(stage.run(force=force, dry_run=dry_run, options=options), render)
