"""baker render -e ENV."""

from __future__ import annotations

import click

from baker.cli.app import App, complete_environment


@click.command("render")
@click.option(
    "-e", "--env", "env_name", required=True, help="environment name", shell_complete=complete_environment
)
@click.option("--allow-dirty", is_flag=True, help="package uncommitted changes (the version is marked dirty)")
@click.pass_obj
def render(app: App, env_name: str, allow_dirty: bool) -> None:
    """Render the Packer template and its variables for ENV into the build folder; `packer validate` it."""
    from baker import render as stage

    env = app.environment(env_name)
    aws = app.aws(env, "bake")
    result = stage.Render(
        app.project, env, aws, local_endpoint=aws.endpoint_url if app.local else None, allow_dirty=allow_dirty
    ).run()
    app.emit(
        result,
        lambda r: (
            f"{r['template']}\n{r['variables']}\n"
            f"  packer {r['packer_version']} validate: ok ({r['validated']})\n"
            f"  source AMI {r['source_ami']}\n  recipe {r['recipe']}"
        ),
    )
