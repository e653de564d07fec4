"""baker config show -e ENV / baker config schema."""

from __future__ import annotations

import json

import click

from baker.cli.app import App, complete_environment


@click.group("config")
def config() -> None:
    """Show the merged configuration of an environment, or the schema of the files."""


@config.command("show")
@click.option(
    "-e", "--env", "env_name", required=True, help="environment name", shell_complete=complete_environment
)
@click.pass_obj
def show(app: App, env_name: str) -> None:
    """The merged, validated configuration of ENV (secrets shown only as where they come from)."""
    import yaml

    from baker.config import redacted

    env = app.environment(env_name)
    data = {"env": env.name, "files": [str(p) for p in env.files], "settings": redacted(env)}
    app.emit(
        data,
        lambda d: (
            f"# {d['env']}: "
            + " <- ".join(d["files"])
            + "\n"
            + yaml.safe_dump(d["settings"], sort_keys=False).rstrip()
        ),
    )


@config.command("schema")
@click.pass_obj
def show_schema(app: App) -> None:
    """The JSON schema of baker.yml and environments/<env>.yml."""
    from baker.config import schema

    data = schema()
    app.emit(data, lambda d: json.dumps(d, indent=2))
