"""The CI recipes under examples/ci work as shipped.

actionlint and zizmor lint the GitHub workflows for real; every `baker …` line of every recipe
names a command and options that exist: in the CLI (`baker.cli.cli`), or, for a command that
DESIGN.md announces and nobody has registered yet, in DESIGN.md's command table.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest
import yaml

from baker.cli import cli
from tests.conftest import REPO, need_tools

CI = REPO / "examples" / "ci"
WORKFLOWS = sorted((CI / "github-actions").glob("*.yml"))
GITLAB = CI / "gitlab" / ".gitlab-ci.yml"
RECIPES = [*WORKFLOWS, GITLAB]
#: where the shared design lives beside a checkout (this repository's siblings: shared/)
DESIGN_CANDIDATES = [REPO.parent / "shared" / "DESIGN.md", REPO / "DESIGN.md"]
#: a row of DESIGN.md's command table, for the checker's own test
PROMOTE_ROW = {"promote": "promote --from ENV --to ENV [--ami ID] [--no-deploy] [--dry-run]"}
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
SHELL_END = {">", ">>", "|", "||", "&&", ";", "2>&1", "2>", "&"}


def design_table() -> dict[str, str] | None:
    """DESIGN.md's command table: command name -> its usage cell (without backticks)."""
    for path in DESIGN_CANDIDATES:
        if path.is_file():
            rows = {}
            for line in path.read_text().splitlines():
                m = re.match(r"^\| `([^`|]+)`", line)
                if m:
                    rows[m.group(1).split()[0]] = m.group(1)
            return rows
    return None


def baker_lines(path: Path) -> list[tuple[int, list[str]]]:
    """Each command line of a recipe that runs baker, as its words up to a shell operator."""
    found = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if line.startswith("#"):
            continue
        line = re.sub(r"^(- )?(run: )?", "", line)
        if not line.startswith("baker "):
            continue
        words = []
        for word in shlex.split(line, comments=True):
            if word in SHELL_END or word.startswith((">", "2>")):
                break
            words.append(word)
        found.append((number, words[1:]))
    return found


def option_names(usage: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", usage))


def _takes_value(param: click.Parameter) -> bool:
    return isinstance(param, click.Option) and not param.is_flag and not param.count


def check_against_cli(words: list[str]) -> str | None:
    """None when ``baker WORDS`` parses as the CLI defines it; else what is wrong."""
    command: click.Command = cli
    path = ["baker"]
    args = list(words)
    while True:
        params = {opt: p for p in command.params for opt in [*p.opts, *p.secondary_opts]}
        values = []
        while args:
            word = args.pop(0)
            if not word.startswith("-"):
                if isinstance(command, click.Group):  # the next command's name
                    args.insert(0, word)
                    break
                values.append(word)
                continue
            name = word.split("=", 1)[0]
            param = params.get(name)
            if param is None:
                return f"{' '.join(path)}: no option {name}"
            if _takes_value(param) and "=" not in word:
                if not args:
                    return f"{' '.join(path)} {name}: needs a value"
                args.pop(0)
        if isinstance(command, click.Group):
            if not args:
                return f"{' '.join(path)}: no command"
            name = args.pop(0)
            sub = command.get_command(click.Context(command), name)
            if sub is None:
                return f"{' '.join(path)}: no command {name!r}"
            command, path = sub, [*path, name]
            continue
        positional = [p for p in command.params if isinstance(p, click.Argument)]
        if len(values) > len(positional) and not any(p.nargs == -1 for p in positional):
            return f"{' '.join(path)}: unexpected {values[len(positional)]!r}"
        for param, value in zip(positional, values, strict=False):
            if isinstance(param.type, click.Choice) and value not in param.type.choices:
                return f"{' '.join(path)}: {value!r} is not one of {list(param.type.choices)}"
        return None


def check_against_design(words: list[str], table: dict[str, str]) -> str | None:
    """For a command DESIGN.md announces: its name and the options its row names."""
    args = list(words)
    while args and args[0].startswith("-"):  # global options
        name = args.pop(0)
        if name in ("--project", "--output"):
            args.pop(0)
    if not args or args[0] not in table:
        return f"baker {args[0] if args else ''}: neither registered nor in DESIGN.md's command table"
    allowed = option_names(table[args[0]])
    for word in args[1:]:
        if word.startswith("-") and word.split("=", 1)[0] not in allowed:
            return f"baker {args[0]}: DESIGN.md names no option {word}"
    return None


def command_of(words: list[str]) -> str:
    args = list(words)
    while args and args[0].startswith("-"):
        if args.pop(0) in ("--project", "--output"):
            args.pop(0)
    return args[0] if args else ""


def test_every_recipe_has_baker_lines():
    for path in RECIPES:
        assert baker_lines(path), path


def test_every_baker_line_matches_the_cli_or_the_design():
    problems = []
    for path in RECIPES:
        for number, words in baker_lines(path):
            if command_of(words) in cli.list_commands(click.Context(cli)):
                wrong = check_against_cli(words)
            else:
                table = design_table()
                wrong = (
                    check_against_design(words, table)
                    if table is not None
                    else f"baker {command_of(words)}: not registered, and no DESIGN.md beside the checkout"
                )
            if wrong:
                problems.append(f"{path.relative_to(REPO)}:{number}: {wrong}")
    assert problems == []


@pytest.mark.parametrize(
    ("line", "wrong"),
    [
        # global options come before the command (DESIGN.md: baker [--output text|json] COMMAND ...)
        ("baker release -e dev --output json", "baker release: no option --output"),
        ("baker --output json release -e dev --force", None),
        ("baker config show -e dev", None),
        ("baker completion bash", None),
        ("baker release -e dev --frobnicate", "baker release: no option --frobnicate"),
        ("baker relase -e dev", "baker: no command 'relase'"),
        ("baker completion tcsh", "baker completion: 'tcsh' is not one of ['bash', 'zsh', 'fish']"),
        ("baker doctor -e", "baker doctor -e: needs a value"),
    ],
)
def test_the_checker_itself(line, wrong):
    assert check_against_cli(shlex.split(line)[1:]) == wrong


def test_the_design_checker_itself():
    assert check_against_design(["promote", "--from", "dev", "--to", "staging"], PROMOTE_ROW) is None
    assert "no option --force" in str(check_against_design(["promote", "--force"], PROMOTE_ROW))
    assert "neither registered" in str(check_against_design(["teleport"], PROMOTE_ROW))


def test_design_tables_promote_row_is_what_the_checker_reads():
    table = design_table()
    if table is None:  # shared/ is not beside this checkout: the registered CLI is checked anyway
        return
    assert table["promote"] == PROMOTE_ROW["promote"]


def test_actionlint_accepts_the_workflows():
    need_tools("actionlint")
    proc = subprocess.run(
        ["actionlint", "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing_in_the_workflows():
    need_tools("zizmor")
    proc = subprocess.run(
        ["zizmor", "--offline", "--no-progress", "--persona=pedantic", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def workflow(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key 'on' as true
    return data


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_assume_a_role_through_oidc_one_run_per_environment(path):
    data = workflow(path)
    assert data["permissions"] == {}
    assert re.fullmatch(r"baker-(dev|\$\{\{ inputs\.to \}\})", data["concurrency"]["group"])
    assert data["concurrency"]["cancel-in-progress"] is False
    for job in data["jobs"].values():
        assert job["permissions"]["id-token"] == "write"
        assert job["environment"]
        uses = [step["uses"] for step in job["steps"] if "uses" in step]
        assert all(PINNED.match(u) for u in uses), uses
        creds = next(s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws"))
        assert "role-to-assume" in creds["with"] and not {"aws-access-key-id", "aws-secret-access-key"} & set(
            creds["with"]
        )
        upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
        assert upload["if"] == "always()"


def test_every_pinned_action_says_its_version():
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            if "uses:" in line:
                assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), f"{path.name}: {line.strip()}"


def test_nightly_forces_the_bake_and_says_why():
    text = (CI / "github-actions" / "nightly.yml").read_text()
    assert "baker --output json release -e dev --force" in text and "source AMI" in text and "archive" in text
    assert workflow(CI / "github-actions" / "nightly.yml")["on"]["schedule"]
    gitlab = GITLAB.read_text()
    assert "baker --output json release -e dev --force" in gitlab


def test_promotion_is_guarded_by_the_target_environment():
    data = workflow(CI / "github-actions" / "promote.yml")
    inputs = data["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"from", "to"}
    (job,) = data["jobs"].values()
    assert job["environment"] == "${{ inputs.to }}"
    run = next(s["run"] for s in job["steps"] if "promote" in s.get("run", ""))
    assert '"$FROM"' in run and "${{" not in run  # inputs reach the shell as variables only


def test_gitlab_has_the_same_three_jobs_through_oidc():
    data = yaml.safe_load(GITLAB.read_text())
    jobs = {k: v for k, v in data.items() if not k.startswith(".") and isinstance(v, dict) and "script" in v}
    assert set(jobs) == {"release-dev", "nightly", "promote"}
    base = data[".baker"]
    assert base["id_tokens"]["AWS_ID_TOKEN"]["aud"] == "sts.amazonaws.com"
    for name, job in jobs.items():
        assert job["extends"] == ".baker" and job["resource_group"].startswith("baker-"), name
        assert job["artifacts"]["when"] == "always", name
    assert jobs["promote"]["environment"]["name"] == "$PROMOTE_TO"


def test_no_recipe_holds_long_lived_keys():
    for path in RECIPES:
        text = path.read_text()
        assert "AWS_SECRET_ACCESS_KEY" not in text and "aws-secret-access-key" not in text, path
