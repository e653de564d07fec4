"""bake: package -> render -> recipe -> (cached AMI | packer build) -> provenance tags.

The recipe hash names everything that determines the image (baker/recipe.py). An available AMI
of this account and region tagged with the same recipe *is* the image, so a repeated bake costs
two DescribeImages calls (resolve the source AMI, look the recipe up) and no Packer run.

Packer runs with -machine-readable; its lines are parsed as they come: readable progress to
stderr (and build.log in the build folder), the artifact's AMI id per region, and its own error
lines for the ToolError when it fails. Packer removes its instance, key pair and security group
when a build fails; instances tagged with this build's id are swept once more as a safety net.
The build folder stays for debugging and holds nothing secret: the vault password reaches only
the vault password client, through baker's handoff (baker/vault.py); the variable it came from is
withheld from every child (runner.withhold).
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

from baker import __version__, package, recipe, render, runner, vault
from baker.aws import AWS, Client
from baker.config import Environment, Project, secret_values, withheld_variables
from baker.errors import ToolError
from baker.preflight import check_project_files

log = logging.getLogger("baker")

#: the provenance tags of DESIGN.md (baker:ci-url only when CI says where it runs)
PROVENANCE = (
    "baker:app",
    "baker:version",
    "baker:git-sha",
    "baker:deb-sha256",
    "baker:recipe",
    "baker:source-ami",
    "baker:baked-for",
    "baker:built-at",
    "baker:builder",
)
_COMMA = "%!(PACKER_COMMA)"
#: variables of packer's environment whose values must never reach a log line
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


# ---------------------------------------------------------------- what changes per build


def ci_url(environ: Mapping[str, str] | None = None) -> str | None:
    """Where the CI job that runs this bake can be seen, when a CI system says so."""
    e = os.environ if environ is None else environ
    if e.get("BAKER_CI_URL"):
        return e["BAKER_CI_URL"]
    if e.get("GITHUB_ACTIONS") == "true" and e.get("GITHUB_RUN_ID") and e.get("GITHUB_REPOSITORY"):
        server = e.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{e['GITHUB_REPOSITORY']}/actions/runs/{e['GITHUB_RUN_ID']}"
    for key in ("CI_JOB_URL", "BUILD_URL", "CIRCLE_BUILD_URL"):  # GitLab, Jenkins, CircleCI
        if e.get(key):
            return e[key]
    return None


#: what site.yml's first task prints: the version of the Ansible that really provisions the image
_ANSIBLE_VERSION = re.compile(r"baker-ansible-version=([0-9][^\s\"']*)")


def builder_tag(packer_version: tuple[int, int, int], ansible: str | None = None) -> str:
    """`baker X; packer Y; ansible-core Z`. Packer tags the AMI before Ansible's version is known
    (the playbook reports it), so baker completes the tag after the build."""
    tag = f"baker {__version__}; packer {'.'.join(map(str, packer_version))}"
    return f"{tag}; ansible-core {ansible}" if ansible else tag


def provenance_tags(
    project: Project,
    env: Environment,
    pkg: package.Package,
    *,
    recipe: str,
    source: str,
    built_at: str,
    builder: str,
    ci: str | None = None,
) -> dict[str, str]:
    tags = {
        "baker:app": project.app.name,
        "baker:version": pkg.version,
        "baker:git-sha": pkg.git_sha or "none",
        "baker:deb-sha256": pkg.sha256,
        "baker:recipe": recipe,
        "baker:source-ami": source,
        "baker:baked-for": env.name,
        "baker:built-at": built_at,
        "baker:builder": builder,
    }
    if ci:
        tags["baker:ci-url"] = ci[:256]
    return tags


def build_values(
    project: Project,
    env: Environment,
    pkg: package.Package,
    *,
    recipe: str,
    source: render.SourceImage,
    packer_version: tuple[int, int, int],
    session: Any,
    local: bool = False,
    built_at: str | None = None,
    build_id: str | None = None,
) -> dict[str, Any]:
    """The variables file's values. ``session`` is the local build host's (None against AWS)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    built_at = built_at or now.isoformat().replace("+00:00", "Z")
    stamp = built_at.replace("-", "").replace(":", "").replace("T", "").rstrip("Z")[:14]
    values: dict[str, Any] = {
        "ami_name": render.ami_name(project.app.name, pkg.version, env.name, stamp),
        "deb_path": str(pkg.path),
        "deb_file": pkg.path.name,
        "build_id": build_id or "render",
        "build_tags": provenance_tags(
            project,
            env,
            pkg,
            recipe=recipe,
            source=source.id,
            built_at=built_at,
            builder=builder_tag(packer_version),
            ci=ci_url(),
        ),
    }
    if local or session is not None:
        values["ssh_port"] = session.port if session is not None else 22
        values["ssh_private_key_file"] = str(session.private_key_file) if session is not None else ""
    return values


# ---------------------------------------------------------------- packer -machine-readable


def parse_machine_line(line: str) -> tuple[str, str, list[str]] | None:
    """`timestamp,target,type,data...` -> (target, type, data), Packer's escapes undone."""
    parts = line.split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    data = [p.replace(_COMMA, ",").replace("\\n", "\n").replace("\\r", "\r") for p in parts[3:]]
    return parts[1], parts[2], data


def parse_artifact_id(value: str) -> dict[str, str]:
    """`us-east-1:ami-1,eu-west-1:ami-2` -> {region: ami}."""
    out = {}
    for item in value.split(","):
        region, _, ami = item.strip().partition(":")
        if ami:
            out[region] = ami
    return out


@dataclass
class PackerWatch:
    """Follows a machine-readable Packer run: progress to the log, artifacts and errors kept."""

    log_file: IO[str] | None = None
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    recent: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40))
    failures: list[str] = field(default_factory=list)
    #: the Ansible task running now, named in the error when it fails
    task: str = ""
    ansible_version: str | None = None

    def __call__(self, line: str) -> None:
        parsed = parse_machine_line(line)
        if parsed is None:
            self._say(line)
            return
        target, kind, data = parsed
        if kind == "ui" and len(data) >= 2:
            text = ",".join(data[1:])
            for piece in text.splitlines():
                self._say(piece)
                if not piece.strip():
                    continue
                if "TASK [" in piece:
                    self.task = piece
                elif self.ansible_version is None and (found := _ANSIBLE_VERSION.search(piece)):
                    self.ansible_version = found.group(1)
                elif data[0] == "error":
                    self.errors.append(piece)
                elif re.search(r"fatal:|FAILED!|ERROR!|\berror\b", piece, re.IGNORECASE):
                    if self.task and self.task not in self.failures:
                        self.failures.append(self.task)
                    self.failures.append(piece)
        elif kind == "artifact" and len(data) >= 3:
            self.artifacts.setdefault(f"{target}.{data[0]}", {})[data[1]] = ",".join(data[2:])

    def _say(self, text: str) -> None:
        if not text.strip():
            return
        self.recent.append(text)
        log.info("[packer] %s", text)
        if self.log_file is not None:
            self.log_file.write(text + "\n")
            self.log_file.flush()

    def amis(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for fields in self.artifacts.values():
            if "id" in fields:
                found.update(parse_artifact_id(fields["id"]))
        return found

    def error_lines(self) -> list[str]:
        lines = self.failures[-15:] + [e for e in self.errors if e not in self.failures]
        return lines[-25:] or list(self.recent)[-15:]


def packer_build_argv(binary: str, rendered: render.Rendered) -> list[str]:
    return [
        binary,
        "build",
        "-machine-readable",
        "-color=false",
        "-on-error=cleanup",
        f"-var-file={rendered.variables}",
        str(rendered.template),
    ]


# ---------------------------------------------------------------- the stage


class Bake:
    """`baker bake`: one environment's AMI from the checked-out commit, or the one already baked."""

    def __init__(
        self,
        project: Project,
        env: Environment,
        aws: AWS,
        *,
        build_host: Any = None,
        allow_dirty: bool = False,
        packer: str = "packer",
    ) -> None:
        self.project = project
        self.env = env
        self.aws = aws
        self.build_host = build_host
        self.allow_dirty = allow_dirty
        self.packer = packer

    @property
    def local(self) -> bool:
        return self.build_host is not None

    def run(self, *, force: bool = False, dry_run: bool = False) -> dict[str, Any]:
        check_project_files(self.project, self.env)
        started = time.monotonic()
        out = render.build_dir(self.project, self.env)
        # botocore loads EC2's model while dpkg-deb runs: a cache hit is mostly these two waits
        with ThreadPoolExecutor(max_workers=1) as pool:
            ec2_client = pool.submit(self.aws.client, "ec2")
            pkg = package.build(self.project, out / "deb", allow_dirty=self.allow_dirty)
            ec2 = ec2_client.result()
        version = render.packer_version(self.packer, cache_dir=out.parent)
        source = render.resolve_source_ami(ec2, self.env.settings.bake.source_ami)
        rendered = render.render(
            self.project,
            self.env,
            source=source,
            version=version,
            out_dir=out,
            local_endpoint=self.aws.endpoint_url if self.local else None,
        )
        digest = recipe.digest_for(
            self.project, self.env, deb=pkg.path, template=rendered.text, source_ami=source.id
        )
        existing = find_by_recipe(ec2, digest)
        result: dict[str, Any] = {
            "ami_id": existing["ImageId"] if existing else None,
            "region": self.env.settings.aws.region,
            "version": pkg.version,
            "recipe": digest,
            "cached": bool(existing) and not force,
            "env": self.env.name,
            "app": self.project.app.name,
            "git_sha": pkg.git_sha,
            "deb_sha256": pkg.sha256,
            "source_ami": source.id,
            "template": str(rendered.template),
            "build_dir": str(out),
        }
        values = functools.partial(
            build_values,
            self.project,
            self.env,
            pkg,
            recipe=digest,
            source=source,
            packer_version=version,
            local=self.local,
        )
        if dry_run:
            rendered.write_variables(values(session=None))
            result.update(
                dry_run=True, cache_hit=bool(existing), would_bake=force or not existing, cached=False
            )
            return result
        if existing and not force:
            log.info(
                "recipe %s already baked: %s (%s)", digest[:12], existing["ImageId"], existing.get("Name")
            )
            result.update(
                name=existing.get("Name"),
                amis={result["region"]: existing["ImageId"]},
                duration=round(time.monotonic() - started, 3),
            )
            return result

        amis, name, tags, packer_seconds = self._build(rendered, pkg, digest, version, values)
        result.update(
            ami_id=amis[result["region"]],
            amis=amis,
            name=name,
            cached=False,
            tags=tags,
            duration=round(time.monotonic() - started, 3),
            packer_seconds=round(packer_seconds, 3),
        )
        return result

    # -------------------------------------------------------------- the packer run

    def _build(
        self,
        rendered: render.Rendered,
        pkg: package.Package,
        digest: str,
        version: tuple[int, int, int],
        values: Callable[..., dict[str, Any]],
    ) -> tuple[dict[str, str], str, dict, float]:
        bake = self.env.settings.bake
        secret = None
        if bake.vault_file and bake.vault_password is not None:
            secret = bake.vault_password.resolve(self.project.root)
        build_id = uuid.uuid4().hex[:16]
        env = render.packer_base_env()
        env.update(packer_aws_env(self.aws))

        with ExitStack() as stack:
            # the secret's own variable reaches no child; the password only the vault client
            stack.enter_context(runner.withhold(withheld_variables(self.env), [secret] if secret else []))
            if secret is not None:
                client = self.project.path(self.project.settings.paths.ansible) / render.VAULT_CLIENT
                env.update(stack.enter_context(vault.handoff(secret, client)))
            session = None
            if self.build_host is not None:
                session = stack.enter_context(self.build_host.session(ssh_user=bake.ssh_username))
            built = values(session=session, build_id=build_id)
            rendered.write_variables(built)
            log.info(
                "baking %s %s for %s (recipe %s)",
                self.project.app.name,
                pkg.version,
                self.env.name,
                digest[:12],
            )
            packer_started = time.monotonic()
            watch = self._packer(rendered, env, secret, build_id, bake.timeout)
            packer_seconds = time.monotonic() - packer_started
            amis = watch.amis()
            region = self.env.settings.aws.region
            if region not in amis:
                raise ToolError(
                    f"packer finished but named no AMI in {region}",
                    tool="packer",
                    output_tail=list(watch.recent)[-15:],
                )
            tags = {
                **{k: v for k, v in bake.tags.items() if not k.startswith("baker:")},
                **built["build_tags"],
                "baker:builder": builder_tag(version, watch.ansible_version or "unknown"),
            }
            for where, ami in amis.items():
                ensure_tags(
                    self.aws.in_region(where).client("ec2") if where != region else self.aws.client("ec2"),
                    ami,
                    tags,
                )
            if self.build_host is not None and session is not None:
                # every region's copy is the same image: each gets the content, the home region first
                for where in sorted(amis, key=lambda r: r != region):
                    self.build_host.commit(session, amis[where])
        return amis, built["ami_name"], tags, packer_seconds

    def _packer(
        self, rendered: render.Rendered, env: dict[str, str], secret: str | None, build_id: str, timeout: int
    ) -> PackerWatch:
        log_path = rendered.directory / "build.log"
        with log_path.open("w") as log_file:
            watch = PackerWatch(log_file=log_file)
            result = runner.run(
                packer_build_argv(self.packer, rendered),
                cwd=self.project.root,
                env=env,
                timeout=timeout,
                check=False,
                on_line=watch,
                stage="packer",
                redact=self._secrets(env, secret),
            )
        if result.returncode != 0:
            self._sweep(build_id)
            raise ToolError(
                f"packer build failed for {self.env.name}; build folder kept: {rendered.directory}",
                tool="packer",
                output_tail=watch.error_lines(),
                returncode=result.returncode,
                details={"build_dir": str(rendered.directory)},
            )
        return watch

    def _secrets(self, env: dict[str, str], vault_password: str | None) -> list[str]:
        """What must never reach a log line (the local cloud's fake keys are not secret)."""
        found = [vault_password] if vault_password else []
        found += secret_values(self.env.settings.bake.ansible_vars, ("bake", "ansible_vars"))
        if not self.aws.credentials:
            found += [v for k, v in env.items() if k in _SECRET_ENV and v]
        return found

    def _sweep(self, build_id: str) -> None:
        """Packer cleans up after a failed build; terminate anything of this build it left running."""
        ec2 = self.aws.client("ec2")
        left: list[str] = []
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": "tag:baker:build-id", "Values": [build_id]},
                {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
            ]
        )
        for page in pages:
            for reservation in page.get("Reservations", []):
                left += [i["InstanceId"] for i in reservation.get("Instances", [])]
        if left:
            log.warning("terminating instances packer left behind: %s", ", ".join(left))
            ec2.terminate_instances(InstanceIds=left)


def packer_aws_env(aws: AWS) -> dict[str, str]:
    """Where Packer finds the environment's AWS: its profile, or, when baker assumes a role, that
    role's temporary credentials (Packer 1.6 cannot assume roles itself). Never logged."""
    out = aws.env_vars()
    if aws.role_arn and not aws.credentials:
        creds = aws.session().get_credentials()
        if creds is not None:
            frozen = creds.get_frozen_credentials()
            out.pop("AWS_PROFILE", None)
            out.update(AWS_ACCESS_KEY_ID=frozen.access_key, AWS_SECRET_ACCESS_KEY=frozen.secret_key)
            if frozen.token:
                out["AWS_SESSION_TOKEN"] = frozen.token
    return out


def find_by_recipe(ec2: Client, digest: str) -> dict[str, Any] | None:
    """The newest available AMI of this account tagged with the recipe: one DescribeImages call."""
    images = ec2.describe_images(
        Owners=["self"],
        Filters=[
            {"Name": "tag:baker:recipe", "Values": [digest]},
            {"Name": "state", "Values": ["available"]},
        ],
    ).get("Images", [])
    return max(images, key=lambda i: i.get("CreationDate", "")) if images else None


def _snapshot_ids(image: Mapping[str, Any]) -> Iterator[str]:
    for mapping in image.get("BlockDeviceMappings", []):
        snap = mapping.get("Ebs", {}).get("SnapshotId")
        if snap:
            yield snap


def ensure_tags(ec2: Client, ami_id: str, tags: Mapping[str, str]) -> None:
    """The provenance tags on the AMI and each of its snapshots, whatever Packer managed to set."""
    images = ec2.describe_images(ImageIds=[ami_id]).get("Images", [])
    if not images:
        raise ToolError(f"packer reported {ami_id} but it does not exist", tool="packer")
    image = images[0]
    resources = []
    have = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    if any(have.get(k) != v for k, v in tags.items()):
        resources.append(ami_id)
    snapshots = list(_snapshot_ids(image))
    if snapshots:
        for snap in ec2.describe_snapshots(SnapshotIds=snapshots).get("Snapshots", []):
            have = {t["Key"]: t["Value"] for t in snap.get("Tags", [])}
            if any(have.get(k) != v for k, v in tags.items()):
                resources.append(snap["SnapshotId"])
    if resources:
        log.info("tagging %s", ", ".join(resources))
        ec2.create_tags(Resources=resources, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
