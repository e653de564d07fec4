"""bake: prepare (package, render, recipe) -> (cached AMI | packer build) -> provenance tags.

The recipe hash names everything that determines the image's content (baker/recipe.py). An
available AMI of this account and region tagged with the same recipe *is* the image, whichever
environment baked it, so a repeated bake costs two DescribeImages calls (resolve the source AMI,
look the recipe up) and no Packer run.

Packer runs with -machine-readable; its lines are parsed as they come: readable progress to
stderr (and build.log in the build folder), the artifact's AMI id per region, and its own error
lines for the ToolError when it fails. Packer removes its instance, key pair and security group
when a build fails; when it is killed (no cleanup runs) baker removes what the build left: the
instance tagged with the build id, Packer's security group found through it, and the key pair
named from the build id.
The build folder stays for debugging and holds nothing secret: the vault password reaches only
the vault password client, through baker's handoff (baker/vault.py) on a socket named from the
build id, which the client gets as its ``--vault-id`` label (no environment variable); the
variable the password came from is withheld from every child (runner.withhold).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
import signal
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

from baker import images, layers, package, plugins, provenance, receipt, recipe, render, runner, vault
from baker.aws import AWS
from baker.config import Environment, Project, secret_values, withheld_variables
from baker.errors import AWSError, ToolError, UsageError

log = logging.getLogger("baker")

#: the provenance tags of DESIGN.md (baker:ci-url only when CI says where it runs)
PROVENANCE = provenance.BAKED
_COMMA = "%!(PACKER_COMMA)"
#: variables of packer's environment whose values must never reach a log line
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
#: Packer's temporary key pair is named from the build id (packer/ami.pkr.hcl.j2)
KEY_PAIR_PREFIX = "baker-build-"
#: the description Packer 1.6 gives the temporary security group it makes (named packer_<uuid>)
PACKER_SG = "Temporary group for Packer"
#: what site.yml's first task prints: the version of the Ansible that really provisions the image
_ANSIBLE_VERSION = re.compile(r"baker-ansible-version=([0-9][^\s\"']*)")


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
        receipt_key: str | None = None,
    ) -> None:
        """``receipt_key``: the key of the configuration files (baker.receipt) computed before they
        were loaded; a bake that ends with an AMI keeps its receipt when they are still the same."""
        self.project = project
        self.env = env
        self.aws = aws
        self.build_host = build_host
        self.allow_dirty = allow_dirty
        self.packer = packer
        self.receipt_key = receipt_key

    @property
    def local(self) -> bool:
        return self.build_host is not None

    def run(self, *, force: bool = False, dry_run: bool = False, layer: str | None = None) -> dict[str, Any]:
        """``layer``: with bake.layers, "base" bakes only the base (the nightly job); "app" takes the
        base from the cache (bakes it only when there is none), so ``force`` rebakes the app layer alone."""
        if self.env.settings.bake.layers is not None:
            return self._layered(force=force, dry_run=dry_run, only=layer)
        if layer is not None:
            raise UsageError(
                f"{self.env.name}: --layer {layer} needs bake.layers "
                "(bake.layers.base.roles and bake.layers.app.roles)"
            )
        started = time.monotonic()
        configured = self.receipt_key or receipt.key(self.project.root, self.env.name)
        prepared = render.prepare(
            self.project,
            self.env,
            self.aws,
            local_endpoint=self.aws.endpoint_url if self.local else None,
            allow_dirty=self.allow_dirty,
            packer=self.packer,
        )
        pkg, digest = prepared.pkg, prepared.recipe
        existing = images.find_by_recipe(prepared.ec2, digest, self.env.settings.aws.region)
        result: dict[str, Any] = {
            "ami_id": existing.id if existing else None,
            "region": self.env.settings.aws.region,
            "version": pkg.version,
            "recipe": digest,
            "cached": bool(existing) and not force,
            "env": self.env.name,
            "app": self.project.app.name,
            "git_sha": pkg.git_sha,
            "deb_sha256": pkg.sha256,
            "source_ami": prepared.source.id,
            "template": str(prepared.directory / render.TEMPLATE_OUT),
            "build_dir": str(prepared.directory),
        }
        if existing is not None:
            result["baked_for"] = existing.tags.get(provenance.BAKED_FOR)
        if dry_run:
            prepared.rendered.write_variables(prepared.values(self.project, self.env, local=self.local))
            result.update(
                dry_run=True, cache_hit=bool(existing), would_bake=force or not existing, cached=False
            )
            return result
        if existing is not None and not force:
            log.info(
                "recipe %s already baked: %s (%s, baked for %s)",
                digest[:12],
                existing.id,
                existing.name,
                result["baked_for"],
            )
            result.update(
                name=existing.name,
                amis=self._distribute(existing),
                duration=round(time.monotonic() - started, 3),
            )
            self._keep_receipt(configured, prepared)
            return result

        amis, name, tags, packer_seconds = self._build(prepared)
        result.update(
            ami_id=amis[result["region"]],
            amis=amis,
            name=name,
            cached=False,
            tags=tags,
            duration=round(time.monotonic() - started, 3),
            packer_seconds=round(packer_seconds, 3),
        )
        self._keep_receipt(configured, prepared)
        return result

    def _keep_receipt(self, configured: str, prepared: render.Prepared) -> None:
        """What the next cache hit of this environment needs of its configuration (baker.receipt);
        none for an image that is also copied or shared (a hit has work to do there). A layered
        environment's keeps its layers' recipe inputs."""
        root, name = self.project.root, self.env.name
        bake, where = self.env.settings.bake, self.env.settings.aws
        if [r for r in bake.copy_to_regions if r != where.region] or bake.share_with_accounts:
            receipt.forget(root, name)
            return
        receipt.write(
            root,
            name,
            configured,
            {
                "env": name,
                "app": self.project.app.name,
                "aws": {
                    "region": where.region,
                    "account_id": where.account_id,
                    "profile": where.profile,
                    "role_arn": where.role_arn,
                },
                "withheld": withheld_variables(self.env),
                "files": [[str(path), directory] for path, directory in prepared.checked],
                "package": package.Spec.of(self.project).as_json(),
                "source_ami": bake.source_ami.model_dump(mode="json"),
                "template": str(render.template_path(self.project)),
                "recipe": recipe.inputs_for(self.project, self.env),
                "layers": layers.layer_inputs(self.project, self.env) if bake.layers is not None else None,
                "build_dir": str(prepared.directory),
                "template_out": str(prepared.directory / render.TEMPLATE_OUT),
            },
        )

    # -------------------------------------------------------------- layered images

    def _layered(self, *, force: bool, dry_run: bool, only: str | None) -> dict[str, Any]:
        """The base (cache hit, or Packer with the base roles), then the app layer on it."""
        started = time.monotonic()
        configured = self.receipt_key or receipt.key(self.project.root, self.env.name)
        bake = self.env.settings.bake
        assert bake.layers is not None
        app_layer = bake.app_layer or "instance"
        endpoint = self.aws.endpoint_url if self.local else None
        prepared = render.prepare(
            self.project,
            self.env,
            self.aws,
            local_endpoint=endpoint,
            allow_dirty=self.allow_dirty,
            packer=self.packer,
        )
        pkg, ec2, region = prepared.pkg, prepared.ec2, self.env.settings.aws.region
        template = render.template_path(self.project).read_text()
        roles_path = layers.roles_dir(self.project)
        out = prepared.directory

        def layer_of(name: str, roles: list[str], source_ami: str | None = None) -> render.Prepared:
            playbook = layers.write_playbook(out / name, name, roles)
            rendered = render.render(
                self.project,
                self.env,
                source=prepared.source,
                version=prepared.packer_version,
                out_dir=out / name,
                local_endpoint=endpoint,
                layer=layers.Layer(playbook=playbook, roles_path=roles_path, source_ami=source_ami),
            )
            return render.Prepared(
                pkg=pkg,
                source=prepared.source,
                packer_version=prepared.packer_version,
                recipe="",
                ec2=ec2,
                directory=out / name,
                renderer=lambda: rendered,
            )

        base_digest = layers.base_recipe(
            self.project, self.env, template=template, source_ami=prepared.source.id
        )
        base = images.find_by_recipe(ec2, base_digest, region)
        result: dict[str, Any] = {
            "region": region,
            "version": pkg.version,
            "env": self.env.name,
            "app": self.project.app.name,
            "git_sha": pkg.git_sha,
            "deb_sha256": pkg.sha256,
            "source_ami": prepared.source.id,
            "app_layer": app_layer,
            "base": {"ami_id": base.id if base else None, "recipe": base_digest, "cached": base is not None},
        }
        if dry_run:
            # the app layer's recipe names the base AMI: known only when the base is baked already
            digest = existing = None
            if base is not None and (not force or only == layers.APP):
                digest = layers.app_recipe(
                    self.project, self.env, base_ami=base.id, deb=pkg.path, template=template
                )
                existing = images.find_by_recipe(ec2, digest, region)
            result.update(
                dry_run=True,
                cache_hit=existing is not None,
                would_bake=force or existing is None,
                cached=False,
                ami_id=existing.id if existing else None,
                recipe=digest,
                template=str(prepared.rendered.template),
            )
            return result
        if base is None or (force and only != layers.APP):
            base_build = layer_of(layers.BASE, bake.layers.base.roles)
            base_build = dataclasses.replace(base_build, recipe=base_digest)
            amis, _, _, _ = self._build(base_build, extra_tags={provenance.LAYER: layers.BASE})
            base = images.require(ec2, amis[region], region)
            result["base"].update(ami_id=base.id, cached=False)
        if only == layers.BASE:
            result.update(ami_id=base.id, recipe=base_digest, cached=result["base"]["cached"])
            result["duration"] = round(time.monotonic() - started, 3)
            return result
        digest = layers.app_recipe(self.project, self.env, base_ami=base.id, deb=pkg.path, template=template)
        result["recipe"] = digest
        layer_tags = {
            provenance.BASE_AMI: base.id,
            provenance.BASE_RECIPE: base_digest,
            provenance.LAYER: layers.APP,
        }
        existing = None if force else images.find_by_recipe(ec2, digest, region)
        if existing is not None:
            result.update(
                ami_id=existing.id, cached=True, name=existing.name, amis=self._distribute(existing)
            )
        elif app_layer == "instance":
            app_build = dataclasses.replace(
                layer_of(layers.APP, bake.layers.app.roles, source_ami=base.id), recipe=digest
            )
            amis, name, tags, packer_seconds = self._build(app_build, extra_tags=layer_tags)
            result.update(
                ami_id=amis[region],
                amis=amis,
                name=name,
                cached=False,
                tags=tags,
                packer_seconds=round(packer_seconds, 3),
            )
        else:
            app_build = dataclasses.replace(layer_of(layers.APP, bake.layers.app.roles), recipe=digest)
            built = app_build.values(self.project, self.env, local=self.local)
            tags = {
                **{k: v for k, v in bake.tags.items() if not k.startswith("baker:")},
                **built["build_tags"],
                **layer_tags,
            }
            snapshot = layers.SnapshotLayer(self.project, self.env, self.aws, local=self.local)
            image = snapshot.build(
                base,
                deb=pkg.path,
                version=pkg.version,
                playbook=app_build.rendered.directory / f"layer-{layers.APP}.yml",
                arguments=render.ansible_arguments(self.project, self.env, local=self.local),
                name=built["ami_name"],
                tags=tags,
            )
            result.update(
                ami_id=image.id,
                amis={region: image.id},
                name=image.name,
                cached=False,
                tags=image.tags,
                snapshot=snapshot.figures.as_dict(),
            )
        result["duration"] = round(time.monotonic() - started, 3)
        self._keep_receipt(configured, prepared)
        return result

    def _distribute(self, image: images.Image) -> dict[str, str]:
        """A cache hit is copied to the regions and shared with the accounts this environment
        asks for that it does not reach yet (where an image is copied is not part of its recipe)."""
        bake = self.env.settings.bake
        home = self.env.settings.aws.region
        amis = {home: image.id}
        for region in bake.copy_to_regions:
            if region == home:
                continue
            ec2 = self.aws.client("ec2", region)
            copy = images.find_by_recipe(ec2, image.recipe or "", region)
            if copy is None:
                log.info(
                    "recipe %s has no AMI in %s yet: copying %s", (image.recipe or "")[:12], region, image.id
                )
                copy = images.copy(
                    ec2,
                    image,
                    region=region,
                    name=image.name,
                    encrypted=image.encrypted,
                    kms_key_id=None,
                    tags={k: v for k, v in image.tags.items() if k.startswith("baker:")},
                )
                if self.build_host is not None:
                    self.build_host.copy_image(image.id, copy.id)
            amis[region] = copy.id
        if bake.share_with_accounts:
            for region, ami in amis.items():
                ec2 = self.aws.client("ec2", region)
                found = images.get(ec2, ami, region)
                if found is not None:
                    images.share(ec2, found, bake.share_with_accounts)
        return amis

    # -------------------------------------------------------------- the packer run

    def _build(
        self, prepared: render.Prepared, *, extra_tags: dict[str, str] | None = None
    ) -> tuple[dict[str, str], str, dict, float]:
        bake = self.env.settings.bake
        rendered, pkg, digest = prepared.rendered, prepared.pkg, prepared.recipe
        secret = None
        if bake.vault_file and bake.vault_password is not None:
            secret = bake.vault_password.resolve(self.project.root)
        build_id = uuid.uuid4().hex[:16]

        with ExitStack() as stack:
            env = render.packer_base_env()
            env.update(stack.enter_context(self.aws.child_env()))
            # the secret's own variable reaches no child; the password only the vault client
            stack.enter_context(runner.withhold(withheld_variables(self.env), [secret] if secret else []))
            if secret is not None:
                # served on the socket named from the build id, which reaches the client as its
                # --vault-id label through the template: packer's environment gets nothing
                client = self.project.path(self.project.settings.paths.ansible) / render.VAULT_CLIENT
                stack.enter_context(vault.handoff(secret, client, build_id))
            session = None
            if self.build_host is not None:
                session = stack.enter_context(self.build_host.session(ssh_user=bake.ssh_username))
            layer = (extra_tags or {}).get(provenance.LAYER)
            built = prepared.values(
                self.project,
                self.env,
                session=session,
                local=self.local,
                build_id=build_id,
                layer=layer if layer == layers.BASE else None,
            )
            rendered.write_variables(built)
            log.info(
                "baking %s %s for %s (recipe %s)",
                self.project.app.name,
                pkg.version,
                self.env.name,
                digest[:12],
            )
            # Packer >= 1.10 bundles neither plugin: init installs what the template pins (or finds it)
            plugins.ensure(
                self.packer,
                prepared.packer_version,
                rendered.template,
                cwd=self.project.root,
                env=env,
                redact=self._secrets(env, secret),
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
                provenance.BUILDER: provenance.builder(
                    prepared.packer_version, watch.ansible_version or "unknown"
                ),
                **(extra_tags or {}),
            }
            for where, ami in amis.items():
                ec2 = self.aws.client("ec2", where)
                image = images.get(ec2, ami, where)
                if image is None:
                    raise ToolError(f"packer reported {ami} in {where} but it does not exist", tool="packer")
                images.tag(ec2, image, tags)
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
            swept = self._sweep(build_id)
            what = "packer build failed"
            if result.returncode < 0:
                # killed (OOM killer, a CI runner's timeout, a kill -9): its own cleanup never ran
                what = f"packer was killed by {_signal_name(-result.returncode)} mid-build"
            left = f"; removed what it left: {', '.join(swept)}" if swept else ""
            raise ToolError(
                f"{what} for {self.env.name}{left}; build folder kept: {rendered.directory}",
                tool="packer",
                output_tail=watch.error_lines(),
                returncode=result.returncode,
                details={"build_dir": str(rendered.directory), "swept": swept},
            )
        return watch

    def _secrets(self, env: dict[str, str], vault_password: str | None) -> list[str]:
        """What must never reach a log line (the local cloud's fake keys are not secret)."""
        found = [vault_password] if vault_password else []
        found += secret_values(self.env.settings.bake.ansible_vars, ("bake", "ansible_vars"))
        if not self.aws.credentials:
            found += [v for k, v in env.items() if k in _SECRET_ENV and v]
        return found

    def _sweep(self, build_id: str) -> list[str]:
        """What a failed build of ``build_id`` left: its instance (tagged with the build id), the
        temporary security group Packer made for it (found through that instance: Packer 1.6
        does not tag it) and the temporary key pair (named from the build id). Packer removes
        them itself when a build fails; when Packer is killed, nothing else would. Returns what
        it removed; what it cannot remove is logged and named in the result."""
        ec2 = self.aws.client("ec2")
        running: list[str] = []
        groups: set[str] = set()
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag:baker:build-id", "Values": [build_id]}]
        )
        for page in pages:
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    if instance.get("State", {}).get("Name") in ("pending", "running", "stopping", "stopped"):
                        running.append(instance["InstanceId"])
                    groups.update(g["GroupId"] for g in instance.get("SecurityGroups", []))
        removed: list[str] = []
        if running:
            log.warning("terminating instances packer left behind: %s", ", ".join(running))
            ec2.terminate_instances(InstanceIds=running)
            removed += running
            if groups:  # a security group in use cannot be deleted: wait for the instances to go
                ec2.get_waiter("instance_terminated").wait(
                    InstanceIds=running, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
                )
        if groups:
            found = ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": sorted(groups)}])
            for group in found.get("SecurityGroups", []):
                if not (
                    group.get("GroupName", "").startswith("packer_") and group.get("Description") == PACKER_SG
                ):
                    continue  # not Packer's temporary group: never ours to delete
                try:
                    ec2.delete_security_group(GroupId=group["GroupId"])
                except AWSError as exc:
                    log.warning(
                        "could not delete packer's security group %s: %s", group["GroupId"], exc.message
                    )
                    continue
                log.warning("deleted the security group packer left behind: %s", group["GroupId"])
                removed.append(group["GroupId"])
        key_name = f"{KEY_PAIR_PREFIX}{build_id}"
        keys = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [key_name]}]).get(
            "KeyPairs", []
        )
        if keys:
            ec2.delete_key_pair(KeyName=key_name)
            log.warning("deleted the key pair packer left behind: %s", key_name)
            removed.append(key_name)
        return removed


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
