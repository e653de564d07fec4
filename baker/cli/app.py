"""What every command shares: the parsed global options, the project, AWS, and result printing."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from baker import runner
from baker.aws import AWS
from baker.config import Environment, Project, load_project, withheld_variables

log = logging.getLogger("baker")


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"baker: {record.levelname.lower()}: {msg}"
        return msg


@dataclass
class App:
    project_dir: str
    output: str = "text"
    verbose: int = 0
    local: bool = False
    _project: Project | None = field(default=None, repr=False)

    def setup_logging(self) -> None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_StderrFormatter("%(message)s"))
        root = logging.getLogger("baker")
        root.handlers[:] = [handler]
        root.propagate = False
        root.setLevel(logging.DEBUG if self.verbose > 1 else logging.INFO)

    @property
    def project(self) -> Project:
        if self._project is None:
            self._project = load_project(Path(self.project_dir))
        return self._project

    def environment(self, name: str) -> Environment:
        """The environment; until the command ends, no child baker starts inherits its secrets'
        variables (``bake.vault_password: {env: NAME}``)."""
        env = self.project.environment(name)
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            ctx.with_resource(runner.withhold(withheld_variables(env)))
        return env

    def enter_local(self) -> None:
        from baker.local import cloud

        cloud.enter()

    def aws(self, env: Environment) -> AWS:
        """AWS for an environment: its region/account, or the local cloud's endpoint with --local."""
        s = env.settings.aws
        if self.local:
            from baker.local import cloud

            return cloud.aws(region=s.region, account_id=s.account_id)
        return AWS(region=s.region, profile=s.profile, role_arn=s.role_arn)

    def emit(self, result: dict[str, Any], text: Callable[[dict[str, Any]], str] | str | None = None) -> None:
        """Print the command's result: one JSON object, or the text rendering."""
        if self.output == "json":
            click.echo(json.dumps(result, indent=None, sort_keys=False, default=str))
            return
        if text is None:
            rendered = "\n".join(f"{k}: {_plain(v)}" for k, v in result.items())
        elif callable(text):
            rendered = text(result)
        else:
            rendered = text
        if rendered:
            click.echo(rendered)


def _plain(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "-"
    if isinstance(v, dict | list):
        return json.dumps(v, default=str)
    return str(v)


def emit_error(output: str, message: str, code: int, details: dict[str, Any]) -> None:
    """Errors: the message on stderr always; with --output json also one JSON object on stdout."""
    click.echo(f"baker: error: {message}", err=True)
    if output == "json":
        payload = {"ok": False, "exit_code": code, "error": message}
        payload.update({k: v for k, v in details.items() if k not in payload})
        click.echo(json.dumps(payload, default=str))
