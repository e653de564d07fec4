"""`baker init`: add baker to an existing git repository.

It writes `baker.yml`, `environments/` (defaults, dev, staging, prod) and the recipe (`packer/`,
`ansible/`, `terraform/`) from templates shipped inside the package, filled with the app's name and
paths. It never overwrites: one existing file and nothing is written.

The recipe is this repository's own: the shipped copies under ``templates/init/`` are the files of
``packer/``, ``ansible/`` and ``terraform/`` byte for byte (``make init-templates`` copies them, and a
unit test fails when a copy drifts), except the few that describe the example app (``OWN``), which
are generic versions of their own. Checked copies rather than copies made at build time: an
editable install (how baker is developed and tested) has no build step, and a diff in review shows
exactly what an adopter gets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml
from pydantic import ValidationError

from baker.config import (
    DEFAULTS_FILE,
    ENV_DIR,
    PROJECT_FILE,
    EnvironmentSettings,
    ProjectSettings,
    merge,
)
from baker.errors import UsageError

TEMPLATES = Path(__file__).resolve().parent / "templates" / "init"
#: the recipe's folders, shipped as copies of this repository's own
RECIPE = ("packer", "ansible", "terraform")
#: files of the recipe that describe the example app: the shipped version is a generic one
OWN = frozenset(
    {
        "ansible/README.md",
        "ansible/roles/app_config/tasks/main.yml",
        "ansible/roles/app_config/templates/env.j2",
    }
)
#: files of the recipe that are run (a wheel does not keep file modes, so init sets them)
EXECUTABLE = frozenset({"ansible/vault-pass-client.py"})
#: files of the recipe an adopter does not get (the example's test-only vault file)
NOT_SHIPPED = frozenset({"ansible/vars/secrets.example.yml"})
ENVIRONMENTS = ("dev", "staging", "prod")
_PY_ENTRY = ("{app}.py", "app.py", "main.py", "server.py", "__main__.py")


@dataclass(frozen=True)
class Answers:
    """What the templates are filled with."""

    app: str
    source: str
    exec_start: str
    port: int = 8080
    health_path: str = "/healthz"

    def values(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "source": self.source,
            "exec_start": self.exec_start,
            "port": self.port,
            "health_path": self.health_path,
        }


def guess_exec_start(source: Path, app: str) -> str | None:
    """The command that runs the app, when the source makes it obvious: a Python entry point or the
    one executable file at its top level. Words naming a source file are made absolute at package time.
    """
    for name in _PY_ENTRY:
        if (source / name.format(app=app)).is_file():
            return f"/usr/bin/python3 {name.format(app=app)}"
    executables = sorted(
        p.name
        for p in source.iterdir()
        if p.is_file() and os.access(p, os.X_OK) and not p.name.startswith(".")
    )
    return executables[0] if len(executables) == 1 else None


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - YAML, not HTML; values go through |yaml
    )
    # the one quoting filter: a JSON scalar is a YAML scalar, so no value can change the structure
    env.filters["yaml"] = lambda v: json.dumps(v, ensure_ascii=False)
    return env


def files(answers: Answers) -> dict[str, bytes]:
    """Every file init writes, by path relative to the project, with its content."""
    out: dict[str, bytes] = {}
    env = _environment()
    values = answers.values()
    out[PROJECT_FILE] = env.get_template(f"{PROJECT_FILE}.j2").render(values).encode()
    for name in ("defaults", *ENVIRONMENTS):
        out[f"{ENV_DIR}/{name}.yml"] = env.get_template(f"{ENV_DIR}/{name}.yml.j2").render(values).encode()
    # build output (paths.build) and CI results stay out of git, also when the app's source is the
    # whole repository: an untracked file there would make every package refuse the dirty tree
    out[".baker/.gitignore"] = b"# baker's build output and run results (paths.build): never committed\n*\n"
    for folder in RECIPE:
        for path in sorted((TEMPLATES / folder).rglob("*")):
            if path.is_file() and not _local_only(path.relative_to(TEMPLATES)):
                out[path.relative_to(TEMPLATES).as_posix()] = path.read_bytes()
    return out


def check(contents: Mapping[str, bytes]) -> None:
    """The written project must load: a bad --app or --source fails here, before anything is written."""
    data = {name: yaml.safe_load(text) for name, text in contents.items() if name.endswith(".yml")}
    problems = []
    try:
        ProjectSettings.model_validate(data[PROJECT_FILE])
    except ValidationError as exc:
        problems += [_problem(PROJECT_FILE, e) for e in exc.errors()]
    defaults = data[f"{ENV_DIR}/{DEFAULTS_FILE}"]
    for name in ENVIRONMENTS:
        try:
            EnvironmentSettings.model_validate(merge(defaults, data[f"{ENV_DIR}/{name}.yml"]))
        except ValidationError as exc:
            problems += [_problem(f"{ENV_DIR}/{name}.yml", e) for e in exc.errors()]
    if problems:
        raise UsageError("the project init would write is not valid:\n  " + "\n  ".join(problems))


def _problem(file: str, err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"])
    return f"{file}: {where}: {err['msg'].removeprefix('Value error, ')}"


def init(
    root: Path,
    *,
    app: str,
    source: str,
    exec_start: str | None = None,
    port: int = 8080,
    health_path: str = "/healthz",
) -> dict[str, Any]:
    """Write the project into ``root``; refuse (nothing written) when any file exists already."""
    root = root.resolve()
    if not root.is_dir():
        raise UsageError(f"{root}: no such directory")
    if not _in_git(root):
        raise UsageError(f"{root} is not in a git repository: baker versions what git has (run git init)")
    if not re.match(r"^[a-z][a-z0-9-]{0,62}$", app):
        raise UsageError(f"--app {app!r}: must be lowercase letters, digits and '-', starting with a letter")
    src = Path(source)
    if src.is_absolute():
        try:
            src = src.resolve().relative_to(root)
        except ValueError:
            raise UsageError(f"--source {source}: must be inside the project {root}") from None
    if not (root / src).is_dir():
        raise UsageError(f"--source {source}: no such directory in {root}")
    if ".." in src.parts:
        raise UsageError(f"--source {source}: must be inside the project {root}")
    command = exec_start or guess_exec_start(root / src, app)
    if not command:
        raise UsageError(
            f"cannot tell which command runs the app in {src}: pass --exec-start "
            "(e.g. '/usr/bin/python3 app.py'; words naming a file of the source become its installed path)"
        )
    if not 0 < port < 65536:
        raise UsageError(f"--port {port}: not a TCP port")
    if not health_path.startswith("/"):
        raise UsageError(f"--health-path {health_path!r}: must start with '/'")
    answers = Answers(
        app=app, source=src.as_posix() or ".", exec_start=command, port=port, health_path=health_path
    )
    contents = files(answers)
    existing = sorted(name for name in contents if (root / name).exists() or (root / name).is_symlink())
    if existing:
        shown = ", ".join(existing[:10]) + (f" and {len(existing) - 10} more" if len(existing) > 10 else "")
        raise UsageError(
            f"refusing to overwrite what exists in {root}: {shown}; nothing was written",
            details={"existing": existing},
        )
    check(contents)
    for name, data in contents.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if name in EXECUTABLE:
            path.chmod(0o755)
    return {
        "project": str(root),
        "app": app,
        "source": answers.source,
        "exec_start": command,
        "files": sorted(contents),
        "next": [
            "set aws.account_id, aws.region and deploy.backend in environments/*.yml",
            "git add baker.yml environments packer ansible terraform && git commit",
            "baker config show -e dev",
            "baker render -e dev",
        ],
    }


def _executable(path: Path) -> bool:
    return path.is_file() and bool(path.stat().st_mode & 0o100)


def _in_git(path: Path) -> bool:
    return any((p / ".git").exists() for p in (path, *path.parents))


# ---------------------------------------------------------------- keeping the shipped copies


def recipe_files(repo: Path) -> list[str]:
    """The files of this repository's recipe that init ships (relative paths)."""
    found = []
    for folder in RECIPE:
        for path in sorted((repo / folder).rglob("*")):
            rel = path.relative_to(repo).as_posix()
            if path.is_file() and not _local_only(path.relative_to(repo)) and rel not in NOT_SHIPPED:
                found.append(rel)
    return found


def _local_only(path: Path) -> bool:
    """What a run leaves in a checkout (.gitignore'd): caches, Terraform's working files and state."""
    return (
        any(part == "__pycache__" or part.startswith(".terraform") for part in path.parts)
        or path.suffix == ".pyc"
        or ".tfstate" in path.name
    )


def drift(repo: Path, templates: Path = TEMPLATES) -> list[str]:
    """How the shipped copies differ from ``repo``'s recipe; empty when they are in step."""
    wanted = set(recipe_files(repo))
    shipped = {
        p.relative_to(templates).as_posix()
        for folder in RECIPE
        for p in (templates / folder).rglob("*")
        if p.is_file() and not _local_only(p.relative_to(templates))
    }
    problems = [f"{rel}: in the repository, not shipped" for rel in sorted(wanted - shipped)]
    problems += [f"{rel}: shipped, not in the repository" for rel in sorted(shipped - wanted)]
    problems += [
        f"{rel}: the shipped copy differs"
        for rel in sorted(wanted & shipped)
        if rel not in OWN and (repo / rel).read_bytes() != (templates / rel).read_bytes()
    ]
    problems += [
        f"{rel}: executable or not in the repository, unlike baker.init.EXECUTABLE says"
        for rel in sorted(wanted)
        if _executable(repo / rel) != (rel in EXECUTABLE)
    ]
    return problems


def sync(repo: Path, templates: Path = TEMPLATES) -> list[str]:
    """Copy ``repo``'s recipe over the shipped copies (``make init-templates``); the files it changed."""
    changed = []
    for problem in drift(repo, templates):
        rel = problem.partition(":")[0]
        target = templates / rel
        if (repo / rel).is_file():
            if rel in OWN and target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(repo / rel, target)  # with its mode: vault-pass-client.py is run by Ansible
        else:
            target.unlink()
        changed.append(rel)
    return changed
