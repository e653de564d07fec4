"""What every command shares: the parsed global options, the project, AWS, and result printing.

Imported by every command before it parses anything (also for --help and each TAB of the shell
completion), so the configuration models and the AWS SDK are imported when a command first asks for
the project or AWS, not here.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import click.shell_completion

from baker.layout import DEFAULTS_FILE, ENV_DIR

if TYPE_CHECKING:
    from baker.aws import AWS
    from baker.config import Environment, Project
    from baker.deploy import Deploy

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
    started: float = field(default_factory=time.monotonic)
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
            from baker.config import load_project

            self._project = load_project(Path(self.project_dir))
        return self._project

    def environment(self, name: str) -> Environment:
        """The environment; until the command ends, no child baker starts inherits its secrets'
        variables (``bake.vault_password: {env: NAME}``)."""
        from baker import runner
        from baker.config import withheld_variables

        env = self.project.environment(name)
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            ctx.with_resource(runner.withhold(withheld_variables(env)))
        return env

    def enter_local(self) -> None:
        from baker.local import cloud

        cloud.enter()

    def aws(self, env: Environment, group: str = "deploy") -> AWS:
        """AWS for an environment: its region/account, or the local cloud's endpoint with --local
        (as the example role of the verb ``group`` when the local cloud enforces IAM)."""
        s = env.settings.aws
        return self.aws_at(
            region=s.region, account_id=s.account_id, profile=s.profile, role_arn=s.role_arn, group=group
        )

    def aws_at(
        self, *, region: str, account_id: str, profile: str | None, role_arn: str | None, group: str
    ) -> AWS:
        """``aws`` from an environment's ``aws.*`` as plain values (a bake's receipt keeps them)."""
        if self.local:
            from baker.local import cloud

            return cloud.aws(region=region, account_id=account_id, group=group)
        from baker.aws import AWS

        return AWS(region=region, profile=profile, role_arn=role_arn)

    def deploy(self, env: Environment) -> Deploy:
        """The environment's Deploy, with what the local cloud needs handed in under --local."""
        from baker.deploy import Deploy

        aws = self.aws(env)
        if not self.local:
            return Deploy(self.project, env, aws)
        from baker.local import cloud

        return Deploy(self.project, env, aws, local=True, test_route=cloud.test_route(aws.endpoint_url))

    def emit(self, result: dict[str, Any], text: Callable[[dict[str, Any]], str] | str | None = None) -> None:
        """Print the command's result: one JSON object, or the text rendering."""
        ctx = click.get_current_context(silent=True)
        command = ctx.command_path.partition(" ")[2] if ctx else ""
        job_summary(command, result, elapsed=time.monotonic() - self.started)
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


def complete_environment(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Shell completion of -e/--env: the environments/*.yml of the project (--project, or here).

    Only file names are read, so completion works while a file is invalid or half written.
    """
    project = ctx.find_root().params.get("project_dir") or "."
    folder = Path(project) / ENV_DIR
    names = sorted(p.stem for p in folder.glob("*.yml") if p.name != DEFAULTS_FILE) if folder.is_dir() else []
    return [click.shell_completion.CompletionItem(n) for n in names if n.startswith(incomplete)]


def _plain(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "-"
    if isinstance(v, dict | list):
        return json.dumps(v, default=str)
    return str(v)


def emit_error(
    output: str,
    message: str,
    code: int,
    details: dict[str, Any],
    *,
    command: str = "",
    elapsed: float | None = None,
) -> None:
    """Errors: the message on stderr always; with --output json also one JSON object on stdout."""
    job_summary(command, details, exit_code=code, error=message, elapsed=elapsed)
    click.echo(f"baker: error: {message}", err=True)
    if output == "json":
        payload = {"ok": False, "exit_code": code, "error": message}
        payload.update({k: v for k, v in details.items() if k not in payload})
        click.echo(json.dumps(payload, default=str))


def job_summary(
    command: str,
    result: dict[str, Any],
    *,
    exit_code: int = 0,
    error: str | None = None,
    elapsed: float | None = None,
) -> None:
    """Append the result's Markdown summary to $GITHUB_STEP_SUMMARY when CI sets it.

    A summary that cannot be written is a warning: the command's own result matters more.
    """
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    from baker import summary
    from baker.provenance import ci_url

    text = summary.markdown(
        command, result, exit_code=exit_code, error=error, elapsed=elapsed, ci_url=ci_url()
    )
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        log.warning("could not append the job summary to %s (GITHUB_STEP_SUMMARY): %s", path, exc.strerror)
