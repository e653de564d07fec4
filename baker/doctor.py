"""`baker doctor`: what a runner lacks, found in seconds instead of ten minutes into a bake.

Every check says what it found and, when it fails, what to do. Nothing is changed: a check that
would need to create something (the state bucket, the state table) only says so. On the local
cloud, which starts empty by design, a missing bucket or table is fine: the first deploy there
creates both, so doctor says "created on the first deploy" and counts it as ready.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from baker import plugins, runner
from baker.aws import AWS, error_code
from baker.config import Environment, Project
from baker.errors import BakerError

#: what baker supports: (lowest, first unsupported or None), and where the bound comes from
SUPPORTED: dict[str, tuple[tuple[int, ...], tuple[int, ...] | None, str]] = {
    "packer": ((1, 6, 0), None, "1.6 has both plugins built in; >= 1.7 gets them with packer init"),
    "ansible-playbook": ((2, 16), (2, 20), "ansible-core >=2.16,<2.20, as pyproject.toml pins it"),
    "terraform": ((1, 5), None, "terraform/versions.tf: required_version >= 1.5"),
    "tofu": ((1, 6), None, "OpenTofu 1.6 is Terraform 1.5's language"),
    "dpkg-deb": ((1, 19), None, "--root-owner-group needs dpkg 1.19"),
}
VERSION_ARGS = {
    "packer": ["version"],
    "ansible-playbook": ["--version"],
    "terraform": ["version"],
    "tofu": ["version"],
    "dpkg-deb": ["--version"],
}
_VERSION = {
    "packer": re.compile(r"Packer v?(\d+)\.(\d+)\.(\d+)"),
    "ansible-playbook": re.compile(r"\[core (\d+)\.(\d+)\.(\d+)"),
    "terraform": re.compile(r"Terraform v(\d+)\.(\d+)\.(\d+)"),
    "tofu": re.compile(r"OpenTofu v(\d+)\.(\d+)\.(\d+)"),
    "dpkg-deb": re.compile(r"version (\d+)\.(\d+)\.(\d+)"),
}
SETUP = "see the README, 'Use it on AWS: one-time setup'"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    env: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_version(tool: str, text: str) -> tuple[int, ...] | None:
    match = _VERSION[tool].search(text)
    return tuple(int(g) for g in match.groups()) if match else None


def supported(tool: str, version: tuple[int, ...]) -> bool:
    low, high, _ = SUPPORTED[tool]
    return version[: len(low)] >= low and (high is None or version[: len(high)] < high)


def _range(tool: str) -> str:
    low, high, _ = SUPPORTED[tool]
    text = ">= " + ".".join(map(str, low))
    return text + (", < " + ".".join(map(str, high)) if high else "")


def check_tool(tool: str) -> Check:
    """Present on PATH, and a version baker supports."""
    hint = runner.INSTALL_HINTS.get(tool, f"install {tool}")
    try:
        path = runner.which(tool)
    except BakerError:
        return Check(tool, False, "not found on PATH", hint)
    # no tool may phone home for its update check (HashiCorp's checkpoint)
    quiet = {**os.environ, "CHECKPOINT_DISABLE": "1", "NO_COLOR": "1"}
    result = runner.run(
        [path, *VERSION_ARGS[tool]], env=quiet, check=False, capture=True, echo=False, timeout=60
    )
    version = parse_version(tool, result.output)
    if version is None:
        tail = result.lines[-1] if result.lines else ""
        return Check(tool, False, f"{path}: cannot read its version ({tail})", hint)
    shown = ".".join(map(str, version))
    why = SUPPORTED[tool][2]
    if not supported(tool, version):
        return Check(tool, False, f"{shown} at {path}; baker supports {_range(tool)} ({why})", hint)
    return Check(tool, True, f"{shown} at {path} (baker supports {_range(tool)})")


def check_plugins(project: Project) -> Check:
    """The plugins the project's template pins, installed for the Packer on PATH (>= 1.7)."""
    from baker import render

    what = "packer plugins"
    try:
        path = runner.which("packer")
        version = render.packer_version(path)
    except BakerError as exc:
        return Check(
            what, False, f"not checked: {exc.message.splitlines()[0]}", runner.INSTALL_HINTS["packer"]
        )
    shown = ".".join(map(str, version))
    if version < plugins.SINCE:
        return Check(
            what, True, f"Packer {shown} has the amazon-ebs builder and the ansible provisioner built in"
        )
    try:
        wanted = plugins.required(render.template_path(project).read_text())
    except BakerError as exc:
        return Check(what, False, f"not checked: {exc.message}", "restore the template (paths.packer)")
    found = plugins.installed(path, version, render.packer_base_env())
    absent = plugins.missing(wanted, found)
    have = ", ".join(f"{i.source} {i.version}" for i in found) or "none"
    where = plugins.plugin_dir(render.packer_base_env())
    if absent:
        need = ", ".join(f"{r.source} {r.version}".strip() for r in absent)
        return Check(
            what,
            False,
            f"Packer {shown} needs {need}; installed in {where}: {have}",
            "; ".join(r.install_command(version) for r in absent)
            + " (or let `baker render`/`bake` run packer init, which needs internet)",
        )
    return Check(what, True, f"Packer {shown} with {have} (plugin directory {where})")


def check_provider(project: Project) -> Check:
    """Which AWS provider versions the Terraform module accepts (its `required_providers`)."""
    module = project.path(project.settings.paths.terraform)
    for tf in sorted(module.glob("*.tf")):
        block = re.search(r"required_providers\s*\{(?P<body>.*?)\n\s*\}", tf.read_text(), re.DOTALL)
        aws = (
            re.search(r"aws\s*=\s*\{[^}]*version\s*=\s*\"(?P<v>[^\"]*)\"", block.group("body"))
            if block
            else None
        )
        if aws:
            return Check(
                "terraform AWS provider",
                True,
                f"the module accepts hashicorp/aws {aws.group('v')} ({tf.name})",
            )
    return Check(
        "terraform AWS provider",
        False,
        f"no required_providers entry for aws in {module}",
        'pin it in the module: required_providers { aws = { source = "hashicorp/aws", version = "..." } }',
    )


def state_table(project: Project) -> str:
    """The DynamoDB table of baker's state in this project (ledger, pins, locks)."""
    return project.settings.state.table


class Doctor:
    """The checks of the tools, then of each environment's AWS: identity, bucket, table, source AMI."""

    def __init__(
        self,
        project: Project,
        aws_for: Callable[[Environment], AWS],
        *,
        local: bool = False,
    ) -> None:
        self.project = project
        self.aws_for = aws_for
        self.local = local

    def run(self, env_names: list[str] | None = None) -> dict[str, Any]:
        binary = self.project.settings.terraform.binary
        checks = [check_tool(t) for t in ("packer", "ansible-playbook", binary, "dpkg-deb")]
        checks += [check_plugins(self.project), check_provider(self.project)]
        names = env_names or self.project.environment_names()
        for name in names:
            checks += self.environment(name)
        failed = [c for c in checks if not c.ok]
        return {
            "ok": not failed,
            "local": self.local,
            "environments": names,
            "failed": len(failed),
            "checks": [c.as_dict() for c in checks],
        }

    def environment(self, name: str) -> list[Check]:
        try:
            env = self.project.environment(name)
        except BakerError as exc:
            return [Check("configuration", False, exc.message, "fix the file and key named above", env=name)]
        aws = self.aws_for(env)
        identity = self._identity(env, aws)
        if not identity.ok:
            rest = "not checked: needs a working AWS identity"
            return [identity] + [
                Check(what, False, rest, identity.fix, env=name)
                for what in ("terraform backend bucket", "state table", "source AMI")
            ]
        return [identity, self._bucket(env, aws), self._table(env, aws), self._source_ami(env, aws)]

    def _identity(self, env: Environment, aws: AWS) -> Check:
        want = env.settings.aws.account_id
        try:
            who = aws.client("sts").get_caller_identity()
        except BakerError as exc:
            fix = (
                "start the local cloud: baker local up"
                if self.local
                else "give this runner credentials: a role (aws.role_arn, or OIDC in CI) or a profile "
                "(aws.profile); " + SETUP
            )
            return Check("AWS identity", False, exc.message.splitlines()[0], fix, env=env.name)
        arn, account = who.get("Arn", "?"), who.get("Account", "?")
        if account != want:
            return Check(
                "AWS identity",
                False,
                f"{arn} is in account {account}, but aws.account_id of {env.name} is {want}",
                f"use credentials of account {want} (aws.role_arn / aws.profile), "
                f"or correct aws.account_id in {env.files[-1]}",
                env=env.name,
            )
        return Check("AWS identity", True, f"{arn} (account {account}, as aws.account_id says)", env=env.name)

    def _bucket(self, env: Environment, aws: AWS) -> Check:
        backend = env.settings.deploy.backend
        what = "terraform backend bucket"
        if backend is None:
            return Check(
                what, True, "no deploy.backend: Terraform keeps its state on this machine", env=env.name
            )
        region = backend.region or env.settings.aws.region
        try:
            aws.in_region(region).client("s3").head_bucket(Bucket=backend.bucket)
        except BakerError as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                if self.local:
                    return Check(
                        what,
                        True,
                        f"s3://{backend.bucket} not there yet: "
                        "the first deploy creates it on the local cloud",
                        env=env.name,
                    )
                return Check(
                    what,
                    False,
                    f"s3://{backend.bucket} ({region}) does not exist",
                    f"create it once, versioned and private (aws s3api create-bucket --bucket "
                    f"{backend.bucket}); {SETUP}",
                    env=env.name,
                )
            return Check(
                what,
                False,
                f"s3://{backend.bucket}: {exc.message.splitlines()[0]}",
                "grant this role s3:ListBucket on the bucket (examples/iam/deploy.json)",
                env=env.name,
            )
        return Check(what, True, f"s3://{backend.bucket} ({region}) exists", env=env.name)

    def _table(self, env: Environment, aws: AWS) -> Check:
        table = state_table(self.project)
        what = "state table"
        try:
            aws.client("dynamodb").describe_table(TableName=table)
        except BakerError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                if self.local:
                    return Check(
                        what,
                        True,
                        f"{table} not there yet: the first deploy creates it on the local cloud",
                        env=env.name,
                    )
                return Check(
                    what,
                    False,
                    f"DynamoDB table {table} does not exist in {aws.region}",
                    f"create it once (on-demand); {SETUP}",
                    env=env.name,
                )
            return Check(
                what,
                False,
                f"{table}: {exc.message.splitlines()[0]}",
                "grant this role dynamodb:DescribeTable on the table (examples/iam/deploy.json)",
                env=env.name,
            )
        return Check(what, True, f"DynamoDB table {table} ({aws.region}) exists", env=env.name)

    def _source_ami(self, env: Environment, aws: AWS) -> Check:
        from baker.render import resolve_source_ami

        try:
            image = resolve_source_ami(aws.client("ec2"), env.settings.bake.source_ami)
        except BakerError as exc:
            return Check(
                "source AMI",
                False,
                exc.message.splitlines()[0],
                f"check bake.source_ami in {env.files[-1]} (and that this account may see the image)",
                env=env.name,
            )
        return Check("source AMI", True, f"{image.id} ({image.name})", env=env.name)


def text(result: dict[str, Any]) -> str:
    """One line per check; a failing one with what to do under it."""
    lines = []
    for c in result["checks"]:
        name = f"{c['env']}: {c['name']}" if c.get("env") else c["name"]
        lines.append(f"{'ok  ' if c['ok'] else 'FAIL'}  {name}: {c['detail']}")
        if not c["ok"] and c.get("fix"):
            lines.append(f"        fix: {c['fix']}")
    total = len(result["checks"])
    lines.append(
        f"{total} checks, all ready" if result["ok"] else f"{result['failed']} of {total} checks failed"
    )
    return "\n".join(lines)
