"""baker demo -e ENV: the whole story on the local cloud (baker/demo.py says which)."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App, complete_environment


def render(result: dict[str, Any]) -> str:
    lines = [f"{s['step']}: {s['said']}" for s in result["steps"]]
    lines += [
        f"demo done in {result['seconds']:.0f} s; the local cloud still runs:",
        f"  baker --local config show -e {result['env']}",
        "  baker local status",
        "  baker local down        # stops it",
    ]
    return "\n".join(lines)


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
    from baker.demo import Demo

    env = app.environment(env_name)  # bad configuration stops the demo before anything starts
    app.local = True
    app.emit(Demo(app.project, env, allow_dirty=allow_dirty).run(), render)
