"""The command line: click only. Each command parses, loads, builds its stage, calls it, prints.

The one error handler lives in ``main``: a BakerError becomes its message and exit code; anything
else is a bug (traceback with -v, exit 1). No other module calls sys.exit.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback

import click

from baker.cli.app import App, emit_error
from baker.errors import BakerError, Interrupted

COMMANDS = [
    # (module, attribute): a command is registered when it works, not before
    ("baker.cli.config_cmd", "config"),
    ("baker.cli.deploy_cmd", "deploy"),
    ("baker.cli.release_cmd", "release"),
    ("baker.cli.unlock_cmd", "unlock"),
    ("baker.cli.package_cmd", "package"),
    ("baker.cli.local_cmd", "local"),
    ("baker.cli.render_cmd", "render"),
    ("baker.cli.bake_cmd", "bake"),
    ("baker.cli.demo_cmd", "demo"),
    ("baker.cli.promote_cmd", "promote"),
    ("baker.cli.pin_cmd", "pin"),
    ("baker.cli.pin_cmd", "unpin"),
    ("baker.cli.rollback_cmd", "rollback"),
    ("baker.cli.retire_cmd", "retire"),
    ("baker.cli.init_cmd", "init"),
    ("baker.cli.doctor_cmd", "doctor"),
    ("baker.cli.completion_cmd", "completion"),
    ("baker.cli.history_cmd", "history"),
    ("baker.cli.status_cmd", "status"),
    ("baker.cli.gc_cmd", "gc"),
    ("baker.cli.revoke_cmd", "revoke"),
    ("baker.cli.revoke_cmd", "unrevoke"),
    ("baker.cli.verify_cmd", "verify"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--project",
    "project_dir",
    type=click.Path(file_okay=False),
    default=".",
    show_default="current directory",
    help="the project root (where baker.yml is)",
)
@click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: exactly one JSON object on stdout; progress goes to stderr",
)
@click.option("-v", "--verbose", count=True, help="more detail on stderr; tracebacks for bugs")
@click.option("--local", is_flag=True, help="run against the local cloud started by 'baker local up'")
@click.version_option(package_name="baker")
@click.pass_context
def cli(ctx: click.Context, project_dir: str, output: str, verbose: int, local: bool) -> None:
    """baker: bake an immutable AMI from a commit and roll it out, health-gated, through Terraform."""
    ctx.obj = App(project_dir=project_dir, output=output, verbose=verbose, local=local)
    ctx.obj.setup_logging()
    if local:
        ctx.obj.enter_local()


def _register() -> None:
    import importlib

    for module, attr in COMMANDS:
        cli.add_command(getattr(importlib.import_module(module), attr))


_register()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    output = "json" if _wants_json(args) else "text"
    verbose = any(a in ("-v", "--verbose") or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in args)
    code = 0
    started = time.monotonic()

    def error(message: str, code: int, details: dict) -> None:
        emit_error(
            output, message, code, details, command=command_path(args), elapsed=time.monotonic() - started
        )

    try:
        cli.main(args=args, prog_name="baker", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        error("interrupted", Interrupted.exit_code, {})
        code = Interrupted.exit_code
    except click.ClickException as exc:
        # bad usage: click's own message, exit 2
        message = exc.format_message()
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            message = f"{exc.ctx.command_path}: {message}"
        error(message, 2, {})
        code = 2
    except BakerError as exc:
        error(exc.message if not isinstance(exc, Interrupted) else str(exc), exc.exit_code, exc.details)
        code = exc.exit_code
    except KeyboardInterrupt:
        error("interrupted", Interrupted.exit_code, {})
        code = Interrupted.exit_code
    except Exception as exc:  # a bug: say so, traceback with -v
        if verbose:
            traceback.print_exc()
        error(
            f"unexpected error (a bug in baker): {type(exc).__name__}: {exc}"
            + ("" if verbose else "; run with -v for the traceback"),
            1,
            {},
        )
        code = 1
    finally:
        # in-process callers (tests, embedding tools) get the logger back as they had it
        logger = logging.getLogger("baker")
        for handler in logger.handlers:
            handler.flush()
        logger.handlers[:] = []
        logger.propagate = True
    return code


def command_path(args: list[str]) -> str:
    """The (sub)command an argument list names, e.g. 'config show'; '' when it names none."""
    path: list[str] = []
    group: click.Group = cli
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--project", "--output") and group is cli:
            skip = True
            continue
        if a.startswith("-"):
            continue
        command = group.commands.get(a)
        if command is None:
            break
        path.append(a)
        if not isinstance(command, click.Group):
            break
        group = command
    return " ".join(path)


def _wants_json(args: list[str]) -> bool:
    for i, a in enumerate(args):
        if a == "--output=json" or (a == "--output" and i + 1 < len(args) and args[i + 1] == "json"):
            return True
    return False


def run() -> None:  # pragma: no cover - console script entry
    sys.exit(main())


__all__ = ["cli", "main"]
