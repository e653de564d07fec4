"""The recipe hash: one digest of everything that determines an image's content.

Same recipe -> same image -> no second bake, whichever environment asks. Its inputs (DESIGN.md):
the .deb bytes, the Packer template (its source, not the rendering for one environment), the
Ansible tree (paths, contents and the executable bit, sorted), the image settings (canonical
JSON) and the resolved source AMI id. Nothing about where or by whom the image is built: not the
environment's name, account or region, not the build's VPC, subnet or instance type, not
timeouts, tags or where it is copied and shared. So dev, staging and prod, sharing their
``bake.*`` in defaults.yml, share one AMI; ``baker:baked-for`` keeps who asked first.

Each input is framed by its name and length, so no two different sets of inputs can produce the
same byte stream.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # digest() runs on plain data: a cache-hit bake hashes without the models
    from baker.config import Environment, Project

#: bump when the hashing itself changes, so old AMIs stop matching
SCHEME = "baker-recipe-v2"
#: files in the Ansible tree that never change the image
_SKIP_DIRS = {"__pycache__", ".git", ".pytest_cache"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".retry", ".swp", "~")
_CHUNK = 1 << 20


def tree_files(root: Path) -> list[Path]:
    """The files of a tree that belong to the recipe, sorted by their path below ``root``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in filenames:
            if name.endswith(_SKIP_SUFFIXES):
                continue
            found.append(Path(dirpath) / name)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


#: bake.* keys that decide where or how an image is built, not what is in it
PLACEMENT_KEYS = (
    "instance_type",
    "vpc_id",
    "subnet_id",
    "timeout",
    "vault_password",
    "copy_to_regions",
    "share_with_accounts",
    "tags",
)
#: bake.* keys of a layered image: left out while unset, so an image without layers hashes as it
#: did before they existed
LAYER_KEYS = ("layers", "app_layer")
#: bake.* keys that decide how the image's snapshot is encrypted: part of the recipe (a cache hit
#: must be encrypted as asked), not of the image settings promote compares (promote re-encrypts
#: the copy with the target's key)
ENCRYPTION_KEYS = ("encrypt_boot", "kms_key_id")


def image_settings(env: Environment) -> dict[str, Any]:
    """The settings that shape the image's content: what promote requires to be equal."""
    bake = env.settings.bake
    unset = {key for key in LAYER_KEYS if getattr(bake, key) is None}
    return bake.model_dump(mode="json", exclude={*PLACEMENT_KEYS, *ENCRYPTION_KEYS, *unset})


def differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "bake") -> list[str]:
    """Key paths whose values differ between two image settings (nested mappings walked)."""
    out: list[str] = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key), b.get(key)
        path = f"{prefix}.{key}"
        if isinstance(left, Mapping) and isinstance(right, Mapping):
            out += differences(left, right, path)
        elif left != right:
            out.append(path)
    return out


def bake_settings(project: Project, env: Environment) -> dict[str, Any]:
    """What the recipe hashes of the settings: the app, its image settings and their encryption."""
    bake = env.settings.bake
    return {
        "app": project.app.name,
        "image": image_settings(env),
        "encryption": {"encrypt_boot": bake.encrypt_boot, "kms_key_id": bake.kms_key_id},
    }


class _Framed:
    def __init__(self) -> None:
        self.h = hashlib.sha256(SCHEME.encode() + b"\0")

    def part(self, name: str, data: bytes) -> None:
        self.h.update(f"{name}\0{len(data)}\0".encode())
        self.h.update(data)

    def file(self, name: str, path: Path) -> None:
        size = path.stat().st_size
        self.h.update(f"{name}\0{size}\0".encode())
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                self.h.update(chunk)


def digest(
    *,
    deb: Path,
    template: str,
    ansible_dir: Path,
    settings: Mapping[str, Any],
    source_ami: str,
    extra_files: Iterable[tuple[str, Path]] = (),
) -> str:
    """The recipe: sha256 (hex) over the framed inputs. ``extra_files`` are (name, path) pairs of
    inputs that live outside the Ansible tree (a vault file kept elsewhere)."""
    f = _Framed()
    f.file("deb", deb)
    f.part("template", template.encode())
    _tree(f, "ansible", ansible_dir)
    f.part("settings", canonical_json(dict(settings)))
    f.part("source-ami", source_ami.encode())
    for name, path in sorted(extra_files, key=lambda item: item[0]):
        f.file(f"extra:{name}", path)
    return f.h.hexdigest()


def inputs_for(project: Project, env: Environment) -> dict[str, Any]:
    """What ``digest`` hashes of ``env``'s configuration, as JSON (kept in a bake's receipt):
    ``ansible_dir``, ``settings`` and ``extra_files`` (a playbook or vault file outside the tree)."""
    ansible_dir = project.path(project.settings.paths.ansible)
    extra: list[tuple[str, str]] = []
    playbook = project.path(project.settings.paths.playbook).resolve()
    if not playbook.is_relative_to(ansible_dir.resolve()):
        extra.append(("playbook", str(playbook)))
    vault_file = env.settings.bake.vault_file
    if vault_file:
        vault = project.path(vault_file).resolve()
        if not vault.is_relative_to(ansible_dir.resolve()):
            extra.append(("vault-file", str(vault)))
    return {"ansible_dir": str(ansible_dir), "settings": bake_settings(project, env), "extra_files": extra}


def digest_of(inputs: Mapping[str, Any], *, deb: Path, template: str, source_ami: str) -> str:
    """The recipe from ``inputs_for``'s data, the .deb, the template's source and the source AMI."""
    return digest(
        deb=deb,
        template=template,
        ansible_dir=Path(inputs["ansible_dir"]),
        settings=inputs["settings"],
        source_ami=source_ami,
        extra_files=[(name, Path(p)) for name, p in inputs["extra_files"]],
    )


def digest_for(project: Project, env: Environment, *, deb: Path, template: str, source_ami: str) -> str:
    """The recipe of ``env``'s image from this project; ``template`` is the template's source."""
    return digest_of(inputs_for(project, env), deb=deb, template=template, source_ami=source_ami)


def _tree(f: _Framed, name: str, root: Path) -> None:
    for path in tree_files(root):
        rel = path.relative_to(root).as_posix()
        mode = "x" if os.access(path, os.X_OK) else "-"
        f.part(f"{name}-path", f"{rel}\0{mode}".encode())
        f.file(f"{name}-file", path)


def layer_digest(
    layer: str,
    *,
    roles_dir: Path,
    roles: Iterable[str],
    settings: Mapping[str, Any],
    parts: Mapping[str, str],
    files: Iterable[tuple[str, Path]] = (),
) -> str:
    """The recipe of one layer of a layered image: its roles' trees (in the order they run), its
    settings, the named ``parts`` (the source or base AMI id, the template's source) and ``files``
    (the .deb, ansible.cfg). Framed like ``digest`` and named by its layer, so no layer's recipe
    can equal another's or an unlayered image's."""
    f = _Framed()
    f.part("layer", layer.encode())
    for role in roles:
        f.part("role", role.encode())
        _tree(f, "role", roles_dir / role)
    f.part("settings", canonical_json(dict(settings)))
    for name in sorted(parts):
        f.part(f"part:{name}", parts[name].encode())
    for name, path in sorted(files, key=lambda item: item[0]):
        if path.is_file():
            f.file(f"file:{name}", path)
    return f.h.hexdigest()


def base_digest(inputs: Mapping[str, Any], *, template: str, source_ami: str) -> str:
    """The base layer's recipe from ``layers.layer_inputs``' data (kept in a bake's receipt)."""
    return layer_digest(
        "base",
        roles_dir=Path(inputs["roles_dir"]),
        roles=inputs["base_roles"],
        settings=inputs["settings"],
        parts={"source-ami": source_ami, "template": template},
        files=[("ansible.cfg", Path(inputs["ansible_cfg"]))],
    )


def app_digest(inputs: Mapping[str, Any], *, base_ami: str, deb: Path, template: str) -> str:
    """The app layer's recipe: its roles, settings, the base AMI, how it is baked, the .deb."""
    parts = {"base-ami": base_ami, "app-layer": inputs["app_layer"]}
    if inputs["app_layer"] == "instance":
        parts["template"] = template
    return layer_digest(
        "app",
        roles_dir=Path(inputs["roles_dir"]),
        roles=inputs["app_roles"],
        settings=inputs["settings"],
        parts=parts,
        files=[("deb", deb), ("ansible.cfg", Path(inputs["ansible_cfg"]))],
    )
