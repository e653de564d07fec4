"""A bake's receipt: a repeated ``bake`` of unchanged inputs answers without loading the configuration.

A cache hit is a hash and two DescribeImages calls, but validating baker.yml and the environment's
files builds pydantic models first, which costs a CI job that bakes every commit more than the hit
itself. So every bake that ends with an AMI (cached or built) keeps what a cache hit needs of the
configuration, as plain data, in ``.baker/receipts/<env>.json``, under a key: a digest of the
configuration files' bytes (baker.yml, environments/defaults.yml, environments/<env>.yml and the
list of environments), the project's place, the baker code that read them and the botocore whose
regions it checked.

``bake -e ENV`` (no --force, --dry-run or --layer) whose receipt has the key of the files as they
are now does the rest as the full path does, with the same functions: it checks that the project
files the full path checked are there, packages (the .deb reused by its inputs' digest), resolves
the source AMI, hashes the recipe and looks it up, so the answer, the log lines and the errors are
the same. No receipt, another key, a missing project file, a .deb that must be built or a recipe
with no AMI: the full path runs, which loads, validates and reports as always. A layered
environment's receipt keeps its layers' recipe inputs: the base is looked up by its recipe, then
the app layer on it. An environment whose AMI is copied to other regions or shared gets no receipt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baker import __version__, kept
from baker.layout import DEFAULTS_FILE, ENV_DIR, ENV_NAME, PROJECT_FILE

if TYPE_CHECKING:
    from baker.aws import AWS

log = logging.getLogger("baker")

#: bump when a receipt's content changes meaning, so old ones stop matching
SCHEME = "baker-receipt-v1"
#: below the project root
RECEIPTS = Path(".baker") / "receipts"
_PACKAGE_DIR = Path(__file__).resolve().parent


def path(root: Path, env: str) -> Path:
    return root / RECEIPTS / f"{env}.json"


def _code() -> Iterator[str]:
    """baker's own files as (path, size, mtime): a changed baker reads the configuration anew."""
    for dirpath, dirnames, filenames in os.walk(_PACKAGE_DIR):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                file = os.path.join(dirpath, name)
                st = os.stat(file)
                yield f"{os.path.relpath(file, _PACKAGE_DIR)}:{st.st_size}:{st.st_mtime_ns}"


def key(root: Path, env: str) -> str:
    """The digest of everything the configuration of ``env`` is made of, as it is on disk now."""
    import botocore  # its endpoint data is what a region is checked against

    h = hashlib.sha256(f"{SCHEME}\0{__version__}\0botocore {botocore.__version__}\0{root}\0{env}\0".encode())
    h.update("\n".join(_code()).encode() + b"\0")
    env_dir = root / ENV_DIR
    names = sorted(p.name for p in env_dir.glob("*.yml")) if env_dir.is_dir() else []
    h.update(("\n".join(names) + "\0").encode())
    for file in (root / PROJECT_FILE, env_dir / DEFAULTS_FILE, env_dir / f"{env}.yml"):
        try:
            data = file.read_bytes()
        except OSError:
            h.update(f"{file.name}\0absent\0".encode())
            continue
        h.update(f"{file.name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def write(root: Path, env: str, key_then: str, content: dict[str, Any]) -> bool:
    """Keep ``content`` as ``env``'s receipt when the configuration is still what ``key_then`` was
    computed from (else, or when it cannot be written, nothing is kept: the next bake loads it)."""
    target = path(root, env)
    if key(root, env) != key_then:
        forget(root, env)
        return False
    text = json.dumps({"key": key_then, **content}, indent=1, sort_keys=True) + "\n"
    if not kept.keep(target, text.encode()):
        log.debug("cannot keep the receipt %s", target)
        return False
    return True


def forget(root: Path, env: str) -> None:
    with contextlib.suppress(OSError):
        path(root, env).unlink()


def read(root: Path, env: str) -> tuple[str, dict[str, Any] | None]:
    """(the key of the configuration now, the receipt when it was written under that key)."""
    now = key(root, env)
    try:
        content = json.loads(path(root, env).read_text())
    except (OSError, ValueError):
        return now, None
    return now, content if isinstance(content, dict) and content.get("key") == now else None


def cache_hit(
    project_dir: str | Path,
    env: str,
    aws_for: Callable[[dict[str, Any]], AWS],
    *,
    allow_dirty: bool = False,
) -> tuple[str | None, dict[str, Any] | None]:
    """(the configuration's key, ``bake``'s result for a cache hit answered from the receipt);
    the result is None when the full path must run. ``aws_for`` makes the AWS of the receipt's
    ``aws`` (region, account_id, profile, role_arn)."""
    started = time.monotonic()
    root = Path(project_dir).resolve()
    if not ENV_NAME.match(env) or not (root / PROJECT_FILE).is_file():
        return None, None
    now, receipt = read(root, env)
    if receipt is None:
        return now, None
    try:
        present = all(Path(p).is_dir() if d else Path(p).is_file() for p, d in receipt["files"])
    except OSError:
        present = False
    if not present:
        return now, None
    from baker import runner

    with runner.withhold(receipt["withheld"]):  # as the full path: no child gets a secret's variable
        return now, _answer(receipt, aws_for(receipt["aws"]), allow_dirty=allow_dirty, started=started)


def _answer(receipt: dict[str, Any], aws: AWS, *, allow_dirty: bool, started: float) -> dict[str, Any] | None:
    from baker import images, package, provenance, recipe

    region = receipt["aws"]["region"]
    spec = package.Spec.from_json(receipt["package"])
    deb_dir = Path(receipt["build_dir"]) / "deb"
    # as the full path: botocore loads EC2's model while the .deb's inputs are hashed
    with ThreadPoolExecutor(max_workers=1) as pool:
        ec2_client = pool.submit(aws.client, "ec2")
        pkg = package.reused(package.plan(spec, allow_dirty=allow_dirty), deb_dir)
        ec2 = ec2_client.result()
    if pkg is None:
        return None
    source = images.resolve_source(ec2, receipt["source_ami"])
    template = Path(receipt["template"]).read_text()
    layered = receipt.get("layers")
    base = None
    if layered:  # the base by its recipe, then the app layer on it (as Bake._layered)
        base_digest = recipe.base_digest(layered, template=template, source_ami=source.id)
        base = images.find_by_recipe(ec2, base_digest, region)
        if base is None:
            return None
        digest = recipe.app_digest(layered, base_ami=base.id, deb=pkg.path, template=template)
    else:
        digest = recipe.digest_of(receipt["recipe"], deb=pkg.path, template=template, source_ami=source.id)
    existing = images.find_by_recipe(ec2, digest, region)
    if existing is None:
        return None
    if layered and base is not None:
        return {
            "region": region,
            "version": pkg.version,
            "env": receipt["env"],
            "app": receipt["app"],
            "git_sha": pkg.git_sha,
            "deb_sha256": pkg.sha256,
            "source_ami": source.id,
            "app_layer": layered["app_layer"],
            "base": {"ami_id": base.id, "recipe": base_digest, "cached": True},
            "recipe": digest,
            "ami_id": existing.id,
            "cached": True,
            "name": existing.name,
            "amis": {region: existing.id},
            "duration": round(time.monotonic() - started, 3),
        }
    baked_for = existing.tags.get(provenance.BAKED_FOR)
    log.info(
        "recipe %s already baked: %s (%s, baked for %s)", digest[:12], existing.id, existing.name, baked_for
    )
    return {
        "ami_id": existing.id,
        "region": region,
        "version": pkg.version,
        "recipe": digest,
        "cached": True,
        "env": receipt["env"],
        "app": receipt["app"],
        "git_sha": pkg.git_sha,
        "deb_sha256": pkg.sha256,
        "source_ami": source.id,
        "template": receipt["template_out"],
        "build_dir": receipt["build_dir"],
        "baked_for": baked_for,
        "name": existing.name,
        "amis": {region: existing.id},
        "duration": round(time.monotonic() - started, 3),
    }
