"""baker package [--out DIR] [--allow-dirty]."""

from __future__ import annotations

from pathlib import Path

import click

from baker.cli.app import App


@click.command("package")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="directory for the .deb  [default: the project's build directory (paths.build)]",
)
@click.option(
    "--allow-dirty", is_flag=True, help="build from uncommitted changes; the version is marked .dirty"
)
@click.pass_obj
def package(app: App, out_dir: str | None, allow_dirty: bool) -> None:
    """Build the versioned, reproducible .deb of the app; prints its path, version and sha256."""
    from baker import package as stage

    project = app.project
    out = Path(out_dir) if out_dir else project.path(project.settings.paths.build)
    result = stage.build(project, out, allow_dirty=allow_dirty).as_dict()
    app.emit(
        result,
        lambda r: (
            f"{r['path']}\n  package {r['package']}\n  version {r['version']}\n"
            f"  sha256  {r['sha256']}\n  git sha {r['git_sha'] or '-'}"
        ),
    )
