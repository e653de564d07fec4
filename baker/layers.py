"""Layered images: a base baked rarely by Packer, the app layer on top of it per commit.

Each layer has its own recipe (recipe.layer_digest): the base's is the resolved source AMI, the
base roles with the variables and the template; the app's is the base AMI id, the .deb bytes,
the app roles with the variables and how the layer is built. Each layer runs a playbook baker
writes into the build folder, naming only that layer's roles (from the project's Ansible tree),
so the same roles serve a Packer build and a chroot.

``bake.app_layer: snapshot`` builds the app layer with no instance (SnapshotLayer): the base's
root snapshot is fetched through the EBS direct APIs (baker.ebs, cached by snapshot id), a
copy-on-write working copy is attached and mounted (baker.volume), the app roles run over
Ansible's chroot connection (community.general.chroot), and only the blocks that differ from
the base go into a child snapshot of the base's, registered as the AMI. Whatever fails or is
interrupted, the volume is unmounted and detached and an unfinished snapshot or image is removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baker import __version__, ebs, images, provenance, recipe, runner, vault, volume
from baker.aws import AWS
from baker.config import Environment, Project, withheld_variables
from baker.errors import ToolError, UsageError
from baker.preflight import VAULT_CLIENT

log = logging.getLogger("baker")

BASE = "base"
APP = "app"
#: the collection that brings the chroot connection (the `ansible` package has it)
CHROOT = "community.general.chroot"
_ANSIBLE_VERSION = re.compile(r"baker-ansible-version=([0-9][^\s\"']*)")


@dataclass(frozen=True)
class Layer:
    """One layer as the Packer template sees it: its playbook, where its roles are (the playbook
    lives outside the Ansible tree), and the AMI it starts from (the base, for the app layer)."""

    playbook: Path
    roles_path: Path
    source_ami: str | None = None


def cache_dir() -> Path:
    """Where fetched snapshots are kept: $BAKER_CACHE_DIR or ~/.cache/baker, then snapshots/."""
    return ebs.cache_dir()


def roles_dir(project: Project) -> Path:
    return project.path(project.settings.paths.ansible) / "roles"


def playbook_text(layer: str, roles: list[str]) -> str:
    """The play of one layer: the roles in order, as the project's own playbook runs them."""
    play = [
        {
            "name": f"The {layer} layer of the image",
            "hosts": "all",
            "become": "{{ baker_become | default(true) }}",
            "gather_facts": False,
            "pre_tasks": [
                {
                    "name": "Name the Ansible that provisions this layer",
                    "ansible.builtin.debug": {"msg": "baker-ansible-version={{ ansible_version.full }}"},
                }
            ],
            "roles": list(roles),
        }
    ]
    return "# Written by baker for one layer of a layered image (bake.layers). Do not edit.\n" + json.dumps(
        play, indent=2
    )


def write_playbook(directory: Path, layer: str, roles: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"layer-{layer}.yml"
    path.write_text(playbook_text(layer, roles) + "\n")
    return path


def _settings(project: Project, env: Environment) -> dict[str, Any]:
    image = recipe.image_settings(env)
    image.pop("layers", None)
    image.pop("app_layer", None)
    return {**recipe.bake_settings(project, env), "image": image}


def layer_inputs(project: Project, env: Environment) -> dict[str, Any]:
    """What the two layers' recipes hash of the configuration, as JSON (kept in a bake's receipt)."""
    bake = env.settings.bake
    assert bake.layers is not None
    return {
        "roles_dir": str(roles_dir(project)),
        "base_roles": list(bake.layers.base.roles),
        "app_roles": list(bake.layers.app.roles),
        "settings": _settings(project, env),
        "ansible_cfg": str(project.path(project.settings.paths.ansible) / "ansible.cfg"),
        "app_layer": bake.app_layer or "instance",
    }


def base_recipe(project: Project, env: Environment, *, template: str, source_ami: str) -> str:
    return recipe.base_digest(layer_inputs(project, env), template=template, source_ami=source_ami)


def app_recipe(project: Project, env: Environment, *, base_ami: str, deb: Path, template: str) -> str:
    return recipe.app_digest(layer_inputs(project, env), base_ami=base_ami, deb=deb, template=template)


# ---------------------------------------------------------------- the snapshot path


def chroot_argv(
    playbook: Path, root: Path, arguments: list[str], *, deb_file: str, version: str, vault_id: str | None
) -> list[str]:
    """ansible-playbook against a mounted root over the chroot connection (no become: baker is
    root already, and the image's sudo is not the runner's)."""
    argv = ["ansible-playbook", "-i", f"{root},", "-c", CHROOT, *arguments]
    if vault_id:
        argv += ["--vault-id", vault_id]
    extra = {"baker_deb": f"/tmp/{deb_file}", "baker_version": version, "baker_become": False}
    argv += ["--extra-vars", json.dumps(extra, sort_keys=True, separators=(",", ":")), str(playbook)]
    return argv


@dataclass
class Figures:
    """What the snapshot path did: the bench and the JSON result read these."""

    base_fetch_cached: bool = False
    base_fetch_bytes: int = 0
    changed_blocks: int = 0
    bytes_written: int = 0
    volume_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "base_fetch": {"cached": self.base_fetch_cached, "bytes": self.base_fetch_bytes},
            "changed_blocks": self.changed_blocks,
            "bytes_written": self.bytes_written,
            "volume_bytes": self.volume_bytes,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


class SnapshotLayer:
    """The app layer written straight to EBS: no instance, no Packer."""

    def __init__(self, project: Project, env: Environment, aws: AWS, *, local: bool = False) -> None:
        self.project = project
        self.env = env
        self.aws = aws
        self.local = local
        self.figures = Figures()

    def build(
        self,
        base: images.Image,
        *,
        deb: Path,
        version: str,
        playbook: Path,
        arguments: list[str],
        name: str,
        tags: dict[str, str],
    ) -> images.Image:
        volume.check_runner()
        if len(base.snapshots) == 0:
            raise UsageError(f"base AMI {base.id} has no root snapshot to build on")
        if shutil.which("ansible-playbook") is None:
            raise UsageError("bake.app_layer: snapshot needs ansible-playbook (pip install ansible)")
        ec2 = self.aws.client("ec2")
        direct = self.aws.client("ebs")
        parent = self._root_snapshot(ec2, base)
        clock = time.monotonic
        started = clock()
        fetched = ebs.fetch(direct, parent, cache_dir(), volume_size=base.root_size or 8)
        self.figures.base_fetch_cached = fetched.cached
        self.figures.base_fetch_bytes = fetched.bytes_read
        self.figures.volume_bytes = fetched.volume_size * ebs.GIB
        self.figures.seconds["fetch"] = clock() - started
        bake = self.env.settings.bake
        secret = None
        if bake.vault_file and bake.vault_password is not None:
            secret = bake.vault_password.resolve(self.project.root)
        with tempfile.TemporaryDirectory(prefix="baker-layer-") as tmp:
            work = Path(tmp) / "root.img"
            volume.cow_copy(fetched.path, work)
            started = clock()
            ansible_version = self._provision(
                work, Path(tmp) / "root", deb, version, playbook, arguments, secret
            )
            self.figures.seconds["provision"] = clock() - started
            started = clock()
            changed = ebs.changed_blocks(fetched.path, work)
            self.figures.changed_blocks = len(changed)
            self.figures.seconds["diff"] = clock() - started
            tags = {
                **tags,
                provenance.BUILDER: f"baker {__version__}; ebs direct; ansible-core {ansible_version}",
            }
            started = clock()
            image = self._publish(ec2, direct, base, parent, work, changed, fetched.volume_size, name, tags)
            self.figures.seconds["publish"] = clock() - started
        return image

    def _root_snapshot(self, ec2: Any, base: images.Image) -> str:
        data = ec2.describe_images(ImageIds=[base.id])["Images"][0]
        for mapping in data.get("BlockDeviceMappings", []):
            if mapping.get("DeviceName") == data.get("RootDeviceName") and mapping.get("Ebs", {}).get(
                "SnapshotId"
            ):
                return str(mapping["Ebs"]["SnapshotId"])
        return base.snapshots[0]

    def _provision(
        self,
        work: Path,
        mountpoint: Path,
        deb: Path,
        version: str,
        playbook: Path,
        arguments: list[str],
        secret: str | None,
    ) -> str:
        """Attach, mount, run the app roles in the chroot, and undo it all; returns Ansible's version."""
        ansible_dir = self.project.path(self.project.settings.paths.ansible)
        build_id = os.urandom(8).hex()
        seen: list[str] = []

        def watch(line: str) -> None:
            if not seen and (found := _ANSIBLE_VERSION.search(line)):
                seen.append(found.group(1))

        with ExitStack() as stack:
            device = stack.enter_context(volume.attached(work))
            root = stack.enter_context(volume.mounted(device, mountpoint))
            staged = root / "tmp" / deb.name
            staged.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(deb, staged)
            stack.callback(staged.unlink, missing_ok=True)
            stack.enter_context(volume.provisioning(root))
            stack.enter_context(runner.withhold(withheld_variables(self.env), [secret] if secret else []))
            vault_id = None
            if secret is not None:
                client = ansible_dir / VAULT_CLIENT
                stack.enter_context(vault.handoff(secret, client, build_id))
                vault_id = f"{build_id}@{client}"
            env = dict(os.environ)
            cfg = ansible_dir / "ansible.cfg"
            if cfg.is_file():
                env["ANSIBLE_CONFIG"] = str(cfg)
            env.update(
                ANSIBLE_ROLES_PATH=str(roles_dir(self.project)),
                ANSIBLE_FORCE_COLOR="0",
                ANSIBLE_NOCOLOR="1",
                ANSIBLE_RETRY_FILES_ENABLED="0",
                # the chroot connection runs each module on stdin instead of copying it in first
                ANSIBLE_PIPELINING="True",
            )
            argv = chroot_argv(
                playbook, root, arguments, deb_file=deb.name, version=version, vault_id=vault_id
            )
            result = runner.run(
                argv,
                cwd=self.project.root,
                env=env,
                check=False,
                on_line=watch,
                stage="ansible",
                redact=[secret] if secret else [],
                timeout=self.env.settings.bake.timeout,
            )
            if result.returncode != 0:
                raise ToolError(
                    f"the app roles failed in the chroot of {work.name}",
                    tool="ansible",
                    output_tail=[ln for ln in result.lines if ln.strip()][-20:],
                    returncode=result.returncode,
                )
        return seen[0] if seen else "unknown"

    def _publish(
        self,
        ec2: Any,
        direct: Any,
        base: images.Image,
        parent: str,
        work: Path,
        changed: list[int],
        volume_size: int,
        name: str,
        tags: dict[str, str],
    ) -> images.Image:
        """The child snapshot and the image; nothing of either stays when this does not finish."""
        upload = ebs.Upload(direct, ec2, parent=parent, volume_size=volume_size)
        kms = self._kms_key_arn() if base.encrypted else None
        try:
            upload.start(tags=tags, description=f"{name}: the app layer on {base.id}", kms_key_arn=kms)
            upload.put(work, changed)
            upload.complete(len(changed))
            self.figures.bytes_written = upload.bytes_written
            assert upload.snapshot_id is not None
            return images.register_child(
                ec2,
                base,
                root_snapshot=upload.snapshot_id,
                name=name,
                description=f"{self.project.app.name} {tags.get(provenance.VERSION, '')} on {base.id}",
                tags=tags,
            )
        except BaseException:
            upload.discard()
            raise

    def _kms_key_arn(self) -> str | None:
        key = self.env.settings.bake.kms_key_id
        if not key or key.startswith("arn:"):
            return key
        return str(self.aws.client("kms").describe_key(KeyId=key)["KeyMetadata"]["Arn"])
