"""The command line: click only. Each command parses, loads, builds its stage, calls it, prints.

The one error handler lives in ``main``: a BakerError becomes its message and exit code; anything
else is a bug (traceback with -v, exit 1). No other module calls sys.exit.
"""

from __future__ import annotations

import gettext
import importlib
import logging
import sys
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

from baker import __version__
from baker.cli.app import App, emit_error
from baker.errors import BakerError, Interrupted

#: every command: its name -> (the module that defines it under that name, its one-line help as
#: ``baker --help`` lists it). The group imports a module only when its command runs or completes, so
#: ``baker --help``, ``--version`` and each TAB answer without the AWS SDK, Jinja2 or the configuration
#: models. A new command is one line here; tests/unit/test_cli.py checks the help against its docstring.
COMMANDS: dict[str, tuple[str, str]] = {
    "config": (
        "baker.cli.config_cmd",
        "Show the merged configuration of an environment, or the schema of the files.",
    ),
    "deploy": (
        "baker.cli.deploy_cmd",
        "Point ENV's fleet at an AMI and wait until every instance is healthy on it (or roll back).",
    ),
    "release": (
        "baker.cli.release_cmd",
        "Bake ENV's AMI (a cache hit when the recipe is unchanged), then deploy it.",
    ),
    "unlock": ("baker.cli.unlock_cmd", "Break ENV's deploy lock."),
    "package": (
        "baker.cli.package_cmd",
        "Build the versioned, reproducible .deb of the app; prints its path, version and sha256.",
    ),
    "local": (
        "baker.cli.local_cmd",
        "The local cloud: run the whole pipeline on this machine, without an AWS account.",
    ),
    "render": (
        "baker.cli.render_cmd",
        "Render the Packer template and its variables for ENV into the build folder; `packer validate` it.",
    ),
    "bake": ("baker.cli.bake_cmd", "Package, render and `packer build` ENV's AMI; prints its id."),
    "demo": (
        "baker.cli.demo_cmd",
        "Run the whole story on the local cloud: release, cache hit, roll forward, automatic rollback.",
    ),
    "promote": (
        "baker.cli.promote_cmd",
        "Take SOURCE's live, healthy AMI into TARGET (copied or shared as its account and region need, "
        "never rebaked), then deploy it there with the full health gate.",
    ),
    "pin": (
        "baker.cli.pin_cmd",
        "Deploy AMI to ENV and freeze it there: deploys and promotions are refused until unpinned.",
    ),
    "unpin": ("baker.cli.pin_cmd", "Lift ENV's pin (what runs stays as it is)."),
    "rollback": (
        "baker.cli.rollback_cmd",
        "Go back to ENV's previous good release: the newest healthy one on another AMI than the live one, "
        "or --to an AMI that was healthy there, with the runtime values it ran with.",
    ),
    "retire": (
        "baker.cli.retire_cmd",
        "Scale ENV's previous color to zero once deploy.keep_previous has passed since the live release "
        "got healthy (blue_green only).",
    ),
    "init": (
        "baker.cli.init_cmd",
        "Add baker to the git repository DIR (default: --project): baker.yml, environments/, the recipe.",
    ),
    "doctor": (
        "baker.cli.doctor_cmd",
        "Check the tools, their versions, AWS credentials and state of each environment; say what to do.",
    ),
    "completion": (
        "baker.cli.completion_cmd",
        "Print the shell completion script of SHELL (environment names come from the project).",
    ),
    "history": (
        "baker.cli.history_cmd",
        "ENV's releases from the ledger, newest first: kind, AMI, version, outcome, when, by whom.",
    ),
    "status": (
        "baker.cli.status_cmd",
        "What runs in each environment (ledger and AWS, no Terraform): AMI, version, git sha, when, by "
        "whom, the pin, the lock, an unfinished release, drift between the ledger and AWS, and whether it "
        "runs a revoked AMI.",
    ),
    "gc": (
        "baker.cli.gc_cmd",
        "Walk the app's AMIs that nothing uses, pins or may roll back to through deprecated, disabled and "
        "deregistered (with their snapshots), one stage per run; protect the live, previous and pinned "
        "AMIs from deregistration.",
    ),
    "revoke": (
        "baker.cli.revoke_cmd",
        "Mark AMI and every copy and child of it revoked: deploy, release, promote, pin and rollback "
        "refuse them (exit 6) and the automatic rollback passes over them.",
    ),
    "unrevoke": (
        "baker.cli.revoke_cmd",
        "Lift the revocation of AMI and of the copies and children that inherited it.",
    ),
    "verify": (
        "baker.cli.verify_cmd",
        "Boot one instance of an AMI, run baker.yml's smoke checks on it over SSH, tag it verified.",
    ),
}


class LazyGroup(click.Group):
    """A group that knows its commands by name and one-line help, and imports one when it is used.

    Commands added with ``add_command`` (or ``@cli.command``) are served as click serves them.
    """

    def __init__(self, *args: Any, lazy: Mapping[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module = importlib.import_module(self.lazy[cmd_name][0])
            self.add_command(getattr(module, cmd_name.replace("-", "_")), cmd_name)
        return self.commands.get(cmd_name)

    def help_line(self, name: str, limit: int = 45) -> str:
        """A command's line in the help, as click would make it from the loaded command."""
        if name in self.commands:
            return self.commands[name].get_short_help_str(limit)
        return click.utils.make_default_short_help(self.lazy[name][1], limit)

    def visible(self, ctx: click.Context, prefix: str = "") -> list[str]:
        return [
            name
            for name in self.list_commands(ctx)
            if name.startswith(prefix) and not (name in self.commands and self.commands[name].hidden)
        ]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.visible(ctx)
        if names:
            limit = formatter.width - 6 - max(len(n) for n in names)
            with formatter.section(gettext.gettext("Commands")):
                formatter.write_dl([(n, self.help_line(n, limit)) for n in names])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        from click.shell_completion import CompletionItem

        found = [CompletionItem(n, help=self.help_line(n)) for n in self.visible(ctx, incomplete)]
        return found + click.Command.shell_complete(self, ctx, incomplete)

    def loaded(self) -> dict[str, click.Command]:
        """Every command, imported (for the tests and tools that walk them all)."""
        ctx = click.Context(self)
        return {n: c for n in self.list_commands(ctx) if (c := self.get_command(ctx, n)) is not None}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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
@click.version_option(__version__, package_name="baker")
@click.pass_context
def cli(ctx: click.Context, project_dir: str, output: str, verbose: int, local: bool) -> None:
    """baker: bake an immutable AMI from a commit and roll it out, health-gated, through Terraform."""
    ctx.obj = App(project_dir=project_dir, output=output, verbose=verbose, local=local)
    ctx.obj.setup_logging()
    if local:
        ctx.obj.enter_local()


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
    ctx = click.Context(cli)
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
        command = group.get_command(ctx, a)
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
