"""baker init [DIR] --app NAME --source PATH."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from baker.cli.app import App


def _text(r: dict[str, Any]) -> str:
    lines = [f"baker added to {r['project']} ({len(r['files'])} files); the app runs: {r['exec_start']}"]
    lines += ["next:", *(f"  {step}" for step in r["next"])]
    return "\n".join(lines)


@click.command("init")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--app", "app_name", required=True, help="the application's name (lowercase, digits, '-')")
@click.option("--source", required=True, help="directory of the app's files, relative to DIR")
@click.option("--exec-start", help="command the service runs (default: guessed from the source)")
@click.option("--port", type=int, default=8080, show_default=True, help="port the app listens on")
@click.option("--health-path", default="/healthz", show_default=True, help="path the load balancer checks")
@click.pass_obj
def init(
    app: App,
    directory: str | None,
    app_name: str,
    source: str,
    exec_start: str | None,
    port: int,
    health_path: str,
) -> None:
    """Add baker to the git repository DIR (default: --project): baker.yml, environments/, the recipe.

    Refuses to overwrite any file; nothing is written then.
    """
    from baker import init as stage

    result = stage.init(
        Path(directory or app.project_dir),
        app=app_name,
        source=source,
        exec_start=exec_start,
        port=port,
        health_path=health_path,
    )
    app.emit(result, _text)
