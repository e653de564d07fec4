"""Bad configurations a user can write, each with what its refusal must say.

Shared by tests/unit/test_config_faults.py (every one exits 2 with one clear line) and
bench/bench_faults.py (the figures: how many refused, exit code, time and memory of each).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: secrets the cases write into the configuration: none may appear in any message
SECRET = "hunter2-Sup3r-s3cret"
DB_SECRET = "db-pw-0f-the-app-9931"


@dataclass(frozen=True)
class Case:
    name: str
    #: file (relative to the project) -> new content, or a function of the old text
    edits: dict[str, bytes | str | Callable[[str], str]]
    #: what the message must contain
    expect: tuple[str, ...]
    args: tuple[str, ...] = ("config", "show", "-e", "dev")
    #: what the message must not contain (beyond the secrets and class names checked for every case)
    forbid: tuple[str, ...] = ()
    #: project folders besides baker.yml and environments/ that the case needs
    parts: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def _append(text: str) -> Callable[[str], str]:
    return lambda old: old + text


def _replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new)

    return edit


def _cut(start: str, end: str) -> Callable[[str], str]:
    """Remove the text from ``start`` up to (not including) ``end``."""

    def edit(text: str) -> str:
        i, j = text.index(start), text.index(end)
        return text[:i] + text[j:]

    return edit


def _laughs(levels: int = 9, width: int = 9) -> str:
    lines = ["aws:", "  region: us-east-1", "x0: &x0 lol"]
    for i in range(1, levels + 1):
        refs = ", ".join(f"*x{i - 1}" for _ in range(width))
        lines.append(f"x{i}: &x{i} [{refs}]")
    return "\n".join(lines) + "\n"


DEV = "environments/dev.yml"
DEFAULTS = "environments/defaults.yml"

CASES: list[Case] = [
    # ---------------------------------------------------------------- bytes and YAML
    Case("undecodable bytes", {DEV: b"aws:\n  region: \xff\xfe us-east-1\n"}, (DEV, ":2:", "not UTF-8")),
    Case("latin-1 text", {DEFAULTS: "team: caf\u00e9\n".encode("latin-1")}, (DEFAULTS, "not UTF-8")),
    Case("a control character", {DEV: "aws:\n  region: us-\x01east-1\n"}, (DEV, ":2:", "#x0001")),
    Case("a NUL byte", {DEV: b"aws:\n  region: us-east-1\x00\n"}, (DEV, "#x0000")),
    Case("deep flow nesting", {DEV: "x: " + "[" * 50000 + "]" * 50000 + "\n"}, (DEV, "nested deeper than")),
    Case(
        "deep block nesting",
        {DEV: "".join(f"{'  ' * i}k{i}:\n" for i in range(200)) + "  " * 200 + "v\n"},
        (DEV, "nested deeper than"),
    ),
    Case("an alias bomb", {DEV: _laughs()}, (DEV, "alias bomb")),
    Case("a wide alias bomb", {DEV: _laughs(levels=4, width=90)}, (DEV, "alias")),
    Case("a recursive alias", {DEV: "aws:\n  region: us-east-1\nx: &a [1, *a]\n"}, (DEV, ":3:", "inside")),
    Case(
        "too many aliases",
        {DEV: "a: &a 1\nl: [" + ", ".join(["*a"] * 150) + "]\n"},
        (DEV, "more than 100 aliases"),
    ),
    Case("a huge file", {DEV: "# " + "x" * 400_000 + "\n"}, (DEV, "larger than 256 KiB")),
    Case("too many values", {DEV: "l: [" + ", ".join(["1"] * 30000) + "]\n"}, (DEV, "more than 20000")),
    Case(
        "a duplicate top-level key",
        {DEV: "aws:\n  region: us-east-1\ndeploy: {}\naws:\n  region: us-west-2\n"},
        (DEV, "duplicate key 'aws' at lines 1 and 4"),
    ),
    Case(
        "a duplicate nested key",
        {
            DEFAULTS: _replace(
                "    instance_type: t3.micro\n", "    instance_type: t3.micro\n    instance_type: m5.large\n"
            )
        },
        (DEFAULTS, "deploy.variables: duplicate key 'instance_type' at lines"),
    ),
    Case("a number of 10000 digits", {DEV: "x: " + "9" * 10000 + "\n"}, (DEV, "invalid YAML value")),
    Case("an impossible date", {DEV: "x: 2024-02-30\n"}, (DEV, "invalid YAML value")),
    Case("a lone surrogate escape", {DEV: 'x: "\\ud800"\n'}, (DEV, ":1:", "not valid unicode")),
    Case(
        "a NUL escape",
        {DEV: 'aws:\n  region: us-east-1\nbake:\n  ssh_username: "ad\\0min"\n'},
        (DEV, ":4:", "NUL"),
    ),
    Case("a python tag", {DEV: "x: !!python/object:os.system {}\n"}, (DEV, "invalid YAML")),
    Case("a list at the top", {DEV: "- aws\n- bake\n"}, (DEV, "top level must be a mapping", "not a list")),
    Case("two documents", {DEV: "aws: {}\n---\nbake: {}\n"}, (DEV, "invalid YAML")),
    Case("broken YAML", {DEV: "aws:\n  region: [us-east-1\n"}, (DEV, "invalid YAML")),
    Case("undecodable baker.yml", {"baker.yml": b"app:\n  name: \xc3\x28\n"}, ("baker.yml", "not UTF-8")),
    # ---------------------------------------------------------------- AWS's limits
    Case(
        "too many tags",
        {DEFAULTS: _replace("    team: platform\n", "".join(f"    t{i}: v\n" for i in range(33)))},
        (DEFAULTS, "bake.tags", "33 tags; at most 32", "reserves 18"),
    ),
    Case(
        "a tag key over 128 characters",
        {DEFAULTS: _replace("    team: platform\n", f"    {'k' * 129}: v\n")},
        (DEFAULTS, "bake.tags", "129 characters; AWS allows 128"),
    ),
    Case(
        "a tag value over 256 characters",
        {DEFAULTS: _replace("    team: platform\n", f"    team: {'v' * 257}\n")},
        (DEFAULTS, "bake.tags", "257 characters; AWS allows 256"),
    ),
    Case(
        "the aws: prefix",
        {DEFAULTS: _replace("    team: platform\n", "    'aws:cloudformation:x': v\n")},
        (DEFAULTS, "bake.tags", "aws: prefix is reserved"),
    ),
    Case(
        "the baker: prefix",
        {DEFAULTS: _replace("    team: platform\n", "    'baker:version': v\n")},
        (DEFAULTS, "bake.tags", "baker: prefix is reserved"),
    ),
    Case(
        "an unknown copy region",
        {DEV: _append("bake:\n  copy_to_regions: [us-west-2, us-east-7]\n")},
        (DEV, "bake.copy_to_regions", "'us-east-7' is not an AWS region"),
    ),
    Case(
        "a made-up copy region",
        {DEV: _append("bake:\n  copy_to_regions: [mars-north-1]\n")},
        (DEV, "bake.copy_to_regions", "mars-north-1"),
    ),
    Case("an unknown region", {DEV: _replace("region: us-east-1", "region: us-esat-1")}, (DEV, "aws.region")),
    Case(
        "an unknown backend region",
        {DEV: _replace("    region: us-east-1", "    region: eu-westt-1")},
        (DEV, "deploy.backend.region"),
    ),
    Case(
        "an empty instance type",
        {DEV: _append("bake:\n  instance_type: ''\n")},
        (DEV, "bake.instance_type", "not an EC2 instance type"),
    ),
    Case(
        "an instance type without a size",
        {DEV: _append("bake:\n  instance_type: t3micro\n")},
        (DEV, "bake.instance_type", "family.size"),
    ),
    Case(
        "a date in ansible_vars",
        {DEV: _append("bake:\n  ansible_vars:\n    release_day: 2024-05-01\n")},
        (DEV, "bake.ansible_vars", "a date at release_day", "quote it"),
    ),
    Case(
        "infinity in a Terraform variable",
        {DEV: _replace("    name: hello-web-dev\n", "    name: hello-web-dev\n    scale: [1, .inf]\n")},
        (DEV, "deploy.variables", "scale[1]"),
    ),
    Case(
        "a mistyped subnet id", {DEV: _append("bake:\n  subnet_id: subnet_0abc\n")}, (DEV, "bake.subnet_id")
    ),
    Case(
        "a KMS key that is no key", {DEV: _append("bake:\n  kms_key_id: my key\n")}, (DEV, "bake.kms_key_id")
    ),
    Case("an empty SSH user", {DEV: _append("bake:\n  ssh_username: ''\n")}, (DEV, "bake.ssh_username")),
    # ---------------------------------------------------------------- the user's words
    Case("bake is a string", {DEV: _append("bake: big\n")}, (DEV, "bake: must be a mapping")),
    Case(
        "source_ami is a list",
        {DEV: _append("bake:\n  source_ami: [ami-1]\n")},
        (DEV, "bake.source_ami: must be a mapping"),
    ),
    Case(
        "a smoke check without a name",
        {"baker.yml": _replace("  - name: service is active\n    command:", "  - command:")},
        ("baker.yml", "smoke_checks[0].name: required key is missing"),
    ),
    Case(
        "a key missing from both files",
        {DEFAULTS: _cut("  source_ami:\n", "  ssh_username:")},
        (DEFAULTS, "bake.source_ami: required key is missing", "add it here, or in"),
        forbid=(f"{DEV}: bake.source_ami",),
    ),
    Case(
        "a wrong type",
        {DEFAULTS: _replace("min_healthy_percent: 50", "min_healthy_percent: lots")},
        (DEFAULTS, "deploy.min_healthy_percent: must be a whole number", '"lots"'),
    ),
    Case("an unknown environment", {}, ("unknown environment 'qa'",), args=("config", "show", "-e", "qa")),
    # ---------------------------------------------------------------- secrets
    Case(
        "the vault password as a string",
        {DEV: _append(f"bake:\n  vault_password: {SECRET}\n")},
        (DEV, "bake.vault_password: must be {env: NAME} or {file: PATH}", "value not shown"),
    ),
    Case(
        "the vault password under value:",
        {DEV: _append(f"bake:\n  vault_password:\n    value: {SECRET}\n")},
        (DEV, "bake.vault_password.value: unknown key"),
    ),
    Case(
        "the vault password in env:",
        {DEV: _append(f"bake:\n  vault_password:\n    env: '{SECRET} x'\n")},
        (DEV, "bake.vault_password.env: must name an environment variable"),
    ),
    Case(
        "the vault password as a number",
        {DEV: _append("bake:\n  vault_password:\n    env: 12345678987654321\n")},
        (DEV, "bake.vault_password.env"),
        forbid=("12345678987654321",),
    ),
    Case(
        "the vault password as a list",
        {DEV: _append(f"bake:\n  vault_password: [{SECRET}]\n")},
        (DEV, "bake.vault_password"),
    ),
    Case(
        "both env: and file:",
        {DEV: _append(f"bake:\n  vault_password:\n    env: HELLO\n    file: {SECRET}\n")},
        (DEV, "bake.vault_password: give exactly one"),
    ),
    Case(
        "a secret ansible var inside a bad bake",
        {DEV: _append(f"bake:\n  - ansible_vars:\n      db_password: {DB_SECRET}\n")},
        (DEV, "bake: must be a mapping"),
    ),
    Case(
        "a secret-named runtime value of the wrong type",
        {DEV: _replace("    HELLO_GREETING: hello from dev\n", f"    API_TOKEN: [{DB_SECRET}]\n")},
        (DEV, "runtime.env"),
    ),
    # ---------------------------------------------------------------- project files (before any work)
    Case(
        "no packer template directory",
        {"baker.yml": _replace("  packer: packer\n", "  packer: packer-templates\n")},
        ("baker.yml: paths.packer", "packer-templates", "not found"),
        args=("render", "-e", "dev"),
        parts=("examples", "ansible"),
    ),
    Case(
        "no playbook",
        {"baker.yml": _replace("  playbook: ansible/site.yml\n", "  playbook: ansible/sites.yml\n")},
        ("baker.yml: paths.playbook", "sites.yml"),
        args=("bake", "-e", "dev"),
        parts=("examples", "ansible", "packer"),
    ),
    Case(
        "no app source",
        {"baker.yml": _replace("  source: examples/hello-web\n", "  source: examples/helo-web\n")},
        ("baker.yml: app.source", "helo-web"),
        args=("render", "-e", "dev"),
        parts=("examples", "ansible", "packer"),
    ),
    Case(
        "an app source outside the project",
        {"baker.yml": _replace("  source: examples/hello-web\n", "  source: ../..\n")},
        ("baker.yml: app.source", "inside the project"),
        args=("render", "-e", "dev"),
        parts=("examples", "ansible", "packer"),
    ),
    Case(
        "a dependency that is no relation",
        {"baker.yml": _replace("depends: [python3]", "depends: [python3, 'a b; $(x)']")},
        ("baker.yml: app.deb.depends[1]", "package relation"),
        args=("bake", "-e", "dev"),
        parts=("examples", "ansible", "packer"),
    ),
    Case(
        "a 300-character package name",
        {"baker.yml": _replace("    package: hello-web\n", f"    package: {'a' * 300}\n")},
        ("baker.yml: app.deb.package", "at most 200"),
        args=("render", "-e", "dev"),
        parts=("examples", "ansible", "packer"),
    ),
    Case(
        "a homepage on two lines",
        {
            "baker.yml": _replace(
                "    architecture: all\n", '    architecture: all\n    homepage: "https://x\\nEvil: 1"\n'
            )
        },
        ("baker.yml: app.deb.homepage",),
        args=("render", "-e", "dev"),
        parts=("examples", "ansible", "packer"),
    ),
    Case(
        "a vault file that is not there",
        {DEV: _append("bake:\n  vault_file: ansible/vars/nope.yml\n  vault_password: {env: X_PASS}\n")},
        (f"{DEV}: bake.vault_file", "nope.yml"),
        args=("bake", "-e", "dev"),
        parts=("examples", "ansible", "packer"),
    ),
]


def make_project(dest: Path, case: Case) -> Path:
    """A copy of this repository's project with the case's edits applied."""
    shutil.copy(REPO / "baker.yml", dest / "baker.yml")
    for part in ("environments", *case.parts):
        shutil.copytree(REPO / part, dest / part, ignore=shutil.ignore_patterns("__pycache__", ".terraform"))
    for name, edit in case.edits.items():
        path = dest / name
        if callable(edit):
            path.write_text(edit(path.read_text()))
        elif isinstance(edit, bytes):
            path.write_bytes(edit)
        else:
            path.write_text(edit)
    return dest


#: in no message, ever
NEVER = (SECRET, DB_SECRET, "instance of", "Traceback", "a bug in baker", "Input should be")
