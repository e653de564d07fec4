"""baker promote --from SRC --to DST: the same AMI, never rebaked, into the next environment."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App, complete_environment
from baker.cli.deploy_cmd import render as render_deploy
from baker.cli.deploy_cmd import rollout_options


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['from']} -> {result['env']}: {result['source_ami_id']} (version {result.get('version')})"
    ]
    if result.get("outcome") == "planned":
        lines += [f"  would {a}" for a in result.get("actions", [])]
        if result.get("plan_text"):
            lines.append(result["plan_text"])
        return "\n".join(lines)
    for region, ami in sorted(result.get("copies", {}).items()):
        made = " (copied now)" if region in result.get("copied", []) else ""
        lines.append(f"  {region}: {ami}{made}")
    if result.get("outcome") == "copied":
        lines.append("  not deployed (--no-deploy)")
    else:
        lines.append(render_deploy(result))
    return "\n".join(lines)


@click.command("promote")
@click.option(
    "--from",
    "source",
    required=True,
    help="the environment whose healthy release is promoted",
    shell_complete=complete_environment,
)
@click.option(
    "--to", "target", required=True, help="the environment it goes to", shell_complete=complete_environment
)
@click.option(
    "--ami", "ami_id", default=None, help="an AMI that was healthy in --from [default: its live one]"
)
@click.option("--no-deploy", is_flag=True, help="copy, share and tag only; do not deploy")
@rollout_options
@click.option("--dry-run", is_flag=True, help="say every copy, share, tag and the plan; change nothing")
@click.pass_obj
def promote(
    app: App,
    source: str,
    target: str,
    ami_id: str | None,
    no_deploy: bool,
    timeout: int | None,
    no_rollback: bool,
    allow_replace: bool,
    dry_run: bool,
) -> None:
    """Take SOURCE's live, healthy AMI into TARGET (copied or shared as its account and region
    need, never rebaked), then deploy it there with the full health gate."""
    from baker.deploy import Options
    from baker.promote import Promote

    src, dst = app.environment(source), app.environment(target)
    build_host = None
    if app.local:
        from baker.local import cloud

        build_host = cloud.build_host()
    stage = Promote(
        app.project,
        src,
        dst,
        app.aws(src, "promote"),
        app.aws(dst, "promote"),
        local=app.local,
        build_host=build_host,
        deploy=app.deploy(dst),
    )
    options = Options(timeout=timeout, rollback=not no_rollback, allow_replace=allow_replace)
    app.emit(stage.run(ami_id=ami_id, deploy=not no_deploy, dry_run=dry_run, options=options), render)
