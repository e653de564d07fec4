"""bake against the local cloud: the real Packer 1.6.6, Ansible, OpenSSH and dpkg, moto as EC2.

The project is a copy of this repository's (baker.yml, environments, packer, ansible, the example
app) in its own git repository, so its version does not move while the suite runs. Its
environments (defaults.yml) read the example vault file; the password comes from an environment
variable.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from baker import ebs, envfile, layers
from baker.bake import PROVENANCE, Bake
from baker.cli import main
from baker.config import load_project
from tests.conftest import commit_all, copy_project, git, need_tools
from tests.localcloud import mounted_snapshot, snapshot_blocks

pytestmark = pytest.mark.integration

VAULT_PASSWORD = "baker-test-only-vault-password"  # the documented test-only password
VAULT_SECRET = "example-admin-token-test-only"  # what the example vault file holds
VAULT_ENV = "BAKER_TEST_VAULT_PASSWORD"
HOSTILE = 'quote " dollar ${var.ami_name} percent %{ if true }x%{ endif } back\\slash\nnew line\ttab é'


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tools("packer", "ansible-playbook", "dpkg-deb", "git", "ssh-keygen")
    root = copy_project(
        tmp_path_factory.mktemp("bake-project"), "environments", "packer", "ansible", "examples/hello-web"
    )
    defaults = root / "environments" / "defaults.yml"
    data = yaml.safe_load(defaults.read_text())
    data["bake"]["vault_file"] = "ansible/vars/secrets.example.yml"
    data["bake"]["vault_password"] = {"env": VAULT_ENV}
    defaults.write_text(yaml.safe_dump(data))
    commit_all(root)
    return root


@pytest.fixture
def vault_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(VAULT_ENV, VAULT_PASSWORD)
    return VAULT_PASSWORD


def bake(project_dir: Path, local_cloud: Any, env: str = "dev", **kwargs: Any) -> dict[str, Any]:
    project = load_project(project_dir)
    environment = project.environment(env)
    stage = Bake(
        project,
        environment,
        local_cloud.aws(environment.settings.aws.region),
        build_host=local_cloud.build_host,
    )
    return stage.run(**kwargs)


def cli(project_dir: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--project", str(project_dir), "--local", "--output", "json", *args])
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    return code, json.loads(lines[-1]) if lines else {}, err.getvalue()


#: what a cache hit answered from the receipt (baker/receipt.py) never imports
HEAVY = ("pydantic", "jinja2", "moto")


def bake_process(project_dir: Path, env: str = "dev") -> tuple[dict[str, Any], list[str]]:
    """``baker --local bake -e ENV`` in a new process: (its result, which of HEAVY it imported)."""
    argv = ["--project", str(project_dir), "--local", "--output", "json", "bake", "-e", env]
    script = (
        "import json, sys\n"
        "from baker.cli import main\n"
        f"code = main({argv!r})\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    return json.loads(lines[-2]), json.loads(lines[-1])


def tags_of(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def image(ec2: Any, ami_id: str) -> dict[str, Any]:
    return ec2.describe_images(ImageIds=[ami_id])["Images"][0]


def dpkg_version(root: Path, package: str) -> str | None:
    status = (root / "var/lib/dpkg/status").read_text()
    for stanza in status.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Package") == package and fields.get("Status") == "install ok installed":
            return fields.get("Version")
    return None


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def edit_env(project_dir: Path, env: str, change: Any) -> None:
    path = project_dir / "environments" / f"{env}.yml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))


def test_bake_makes_a_tagged_ami_with_the_app_installed_and_no_secret_anywhere(
    project_dir, local_cloud, vault_password, capsys, tmp_path
):
    result = bake(project_dir, local_cloud)
    ec2 = local_cloud.client("ec2")
    ami = image(ec2, result["ami_id"])
    assert ami["State"] == "available" and result["cached"] is False
    assert ami["Name"].startswith("hello-web-") and "-dev-" in ami["Name"]

    deb = next((project_dir / ".baker/build/dev/deb").glob("*.deb"))
    source = ec2.describe_images(
        Owners=["136693071363"], Filters=[{"Name": "name", "Values": ["debian-12-amd64-*"]}]
    )["Images"]
    expected = {
        "baker:app": "hello-web",
        "baker:version": result["version"],
        "baker:git-sha": git(project_dir, "rev-parse", "HEAD"),
        "baker:deb-sha256": hashlib.sha256(deb.read_bytes()).hexdigest(),
        "baker:recipe": result["recipe"],
        "baker:source-ami": max(source, key=lambda i: i["CreationDate"])["ImageId"],
        "baker:baked-for": "dev",
        "team": "platform",
    }
    tags = tags_of(ami)
    assert set(PROVENANCE) <= set(tags)
    assert {k: tags[k] for k in expected} == expected
    assert "packer 1.6.6" in tags["baker:builder"] and "ansible-core" in tags["baker:builder"]
    assert tags["baker:built-at"].endswith("Z")
    snapshots = [m["Ebs"]["SnapshotId"] for m in ami["BlockDeviceMappings"] if "Ebs" in m]
    assert snapshots
    for snap in ec2.describe_snapshots(SnapshotIds=snapshots)["Snapshots"]:
        assert {k: tags_of(snap).get(k) for k in PROVENANCE} == {k: tags[k] for k in PROVENANCE}
        # encrypt_boot: the build instance's root volume was encrypted, so the image's snapshot is
        assert snap["Encrypted"] is True and snap["VolumeSize"] == 8, snap

    root = local_cloud.build_host.image_root(result["ami_id"])
    assert root is not None
    assert dpkg_version(root, "hello-web") == result["version"]
    assert (root / "opt/hello-web/VERSION").read_text().strip() == result["version"]
    env_file = (root / "etc/default/hello-web").read_text()
    settings = envfile.parse(env_file)
    assert settings["HELLO_PORT"] == "8080" and settings["HELLO_GREETING"] == "hello"
    assert "hello from dev" not in env_file, "runtime configuration is never baked"
    unit_dir = next(d for d in ("usr/lib/systemd/system", "lib/systemd/system") if (root / d).is_dir())
    unit = (root / unit_dir / "hello-web.service").read_text()
    assert unit.index("EnvironmentFile=-/etc/default/hello-web\n") < unit.index(
        "EnvironmentFile=-/etc/hello-web/runtime.env"
    ), "the runtime file is read after the baked defaults"
    assert (root / "etc/systemd/system/multi-user.target.wants/hello-web.service").is_symlink()
    assert "PasswordAuthentication no" in (root / "etc/ssh/sshd_config.d/50-baker.conf").read_text()
    assert not list((root / "tmp").glob("*.deb"))

    # the AMI's root snapshot holds the baked disk: GPT, an ext4 root partition with the app in it
    ebs, snapshot = local_cloud.client("ebs"), snapshots[0]
    pages = snapshot_blocks(ebs, snapshot, page=100)
    blocks = [b for p in pages for b in p]
    assert len(pages) > 1 and all(len(p) <= 100 for p in pages)
    assert [b["BlockIndex"] for b in blocks] == sorted({b["BlockIndex"] for b in blocks})
    first = ebs.get_snapshot_block(SnapshotId=snapshot, BlockIndex=0, BlockToken=blocks[0]["BlockToken"])
    data = first["BlockData"].read()
    assert (
        data[512:520] == b"EFI PART"
        and first["Checksum"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    )
    with mounted_snapshot(local_cloud, snapshot, tmp_path / "disk") as disk:
        assert (disk / "opt/hello-web/VERSION").read_text().strip() == result["version"]
        assert dpkg_version(disk, "hello-web") == result["version"]

    # the vault password and what the vault holds: not in the build folder, the logs, the image
    logs = capsys.readouterr()
    for secret in (vault_password, VAULT_SECRET):
        assert secret not in logs.out + logs.err
        for path in files_under(project_dir / ".baker", root):
            assert secret.encode() not in path.read_bytes(), path


def test_an_unchanged_recipe_is_a_cache_hit_without_packer(project_dir, local_cloud, vault_password):
    first = bake(project_dir, local_cloud)
    build = project_dir / ".baker/build/dev"
    log, template = build / "build.log", build / "ami.pkr.hcl"
    deb = next((build / "deb").glob("*.deb"))
    before = {p: p.stat().st_mtime_ns for p in (log, template, deb)}
    again = bake(project_dir, local_cloud)
    assert again["cached"] is True
    assert (again["ami_id"], again["recipe"]) == (first["ami_id"], first["recipe"])
    assert log.stat().st_mtime_ns == before[log], "packer ran on a cache hit"
    # the recipe comes from the inputs: the .deb is reused and no template rendered on a hit
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert again["deb_sha256"] == first["deb_sha256"]
    ec2 = local_cloud.client("ec2")
    same = ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "tag:baker:recipe", "Values": [first["recipe"]]}]
    )
    assert len(same["Images"]) == 1

    # `baker bake` as CI runs it, a process of its own: answered from the last bake's receipt, the
    # same result (but its duration), without loading the configuration models or Jinja2
    hit, loaded = bake_process(project_dir)
    assert {k: v for k, v in hit.items() if k != "duration"} == {
        k: v for k, v in again.items() if k != "duration"
    }
    assert loaded == [], f"a cache hit imported {loaded}"

    # staging shares dev's image settings (defaults.yml): the same recipe, dev's AMI, no bake
    code, staging, err = cli(project_dir, "bake", "-e", "staging")
    assert code == 0, err
    assert (staging["cached"], staging["ami_id"], staging["recipe"]) == (
        True,
        first["ami_id"],
        first["recipe"],
    )
    assert staging["baked_for"] == "dev"
    assert log.stat().st_mtime_ns == before[log]
    # a setting that is not part of the recipe changes the configuration, not the image
    edit_env(project_dir, "staging", lambda d: d.setdefault("bake", {}).update(instance_type="t3.large"))
    try:
        moved, loaded = bake_process(project_dir, "staging")
    finally:
        git(project_dir, "checkout", "--", "environments/staging.yml")
    assert (moved["cached"], moved["ami_id"]) == (True, first["ami_id"])
    assert "pydantic" in loaded, "a changed configuration must be loaded and validated again"

    dry = bake(project_dir, local_cloud, dry_run=True)
    assert dry["cache_hit"] is True and dry["would_bake"] is False and dry["ami_id"] == first["ami_id"]
    forced = bake(project_dir, local_cloud, force=True)
    assert forced["cached"] is False and forced["ami_id"] != first["ami_id"]
    assert forced["recipe"] == first["recipe"]


def test_a_changed_ansible_file_gives_a_new_recipe_and_a_new_bake(project_dir, local_cloud, vault_password):
    first = bake(project_dir, local_cloud)
    conf = project_dir / "ansible/roles/hardening/files/sshd-baker.conf"
    original = conf.read_text()
    conf.write_text(original + "MaxAuthTries 3\n")
    try:
        dry = bake(project_dir, local_cloud, dry_run=True)
        assert dry["recipe"] != first["recipe"] and dry["would_bake"] is True
        # through the CLI: the configuration is unchanged, so its receipt is read; the recipe is not
        code, changed, err = cli(project_dir, "bake", "-e", "dev")
    finally:
        conf.write_text(original)
    assert code == 0, err
    assert changed["cached"] is False and changed["ami_id"] != first["ami_id"]
    root = local_cloud.build_host.image_root(changed["ami_id"])
    assert "MaxAuthTries 3" in (root / "etc/ssh/sshd_config.d/50-baker.conf").read_text()
    assert bake(project_dir, local_cloud)["ami_id"] == first["ami_id"], "the old recipe is still cached"


def test_a_changed_setting_rebakes_and_a_hostile_tag_value_and_a_kms_key_reach_the_image(
    project_dir, local_cloud, vault_password
):
    first = bake(project_dir, local_cloud)
    saved = (project_dir / "environments/dev.yml").read_text()
    key = local_cloud.client("kms").create_key(Description="baker test: the image's own key")["KeyMetadata"]

    def hostile(data: dict[str, Any]) -> None:
        data.setdefault("bake", {})["tags"] = {"note": HOSTILE, "owner ${x}": "%{y}"}
        data.setdefault("bake", {})["ansible_vars"] = {"hello_port": 8080, "hello_greeting": HOSTILE}
        data["bake"]["kms_key_id"] = key["Arn"]

    edit_env(project_dir, "dev", hostile)
    try:  # through the CLI: the receipt of the first bake must not answer for the changed settings
        code, result, err = cli(project_dir, "bake", "-e", "dev")
    finally:
        (project_dir / "environments/dev.yml").write_text(saved)
    assert code == 0, err
    assert result["recipe"] != first["recipe"] and result["ami_id"] != first["ami_id"]
    ec2 = local_cloud.client("ec2")
    ami = image(ec2, result["ami_id"])
    tags = tags_of(ami)
    assert tags["note"] == HOSTILE
    assert tags["owner ${x}"] == "%{y}"
    assert tags["baker:baked-for"] == "dev" and tags["baker:recipe"] == result["recipe"]
    snap = ec2.describe_snapshots(SnapshotIds=[ami["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]])
    assert tags_of(snap["Snapshots"][0])["note"] == HOSTILE
    # the environment's KMS key encrypted the build's root volume, so the image's snapshot
    assert (snap["Snapshots"][0]["Encrypted"], snap["Snapshots"][0].get("KmsKeyId")) == (True, key["Arn"])
    root = local_cloud.build_host.image_root(result["ami_id"])
    # the hostile greeting reaches the app's environment file verbatim (as systemd reads it)
    assert envfile.parse((root / "etc/default/hello-web").read_text())["HELLO_GREETING"] == HOSTILE


def running_instances(ec2) -> set[str]:
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return {i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]}


def test_a_failing_playbook_exits_3_with_ansibles_words_and_leaves_nothing_behind(
    project_dir, local_cloud, vault_password
):
    ec2 = local_cloud.client("ec2")
    before = running_instances(ec2)
    tasks = project_dir / "ansible/roles/app_config/tasks/main.yml"
    original = tasks.read_text()
    tasks.write_text(
        original + "\n- name: Deliberately failing step\n  ansible.builtin.command: /bin/false\n"
    )
    try:
        code, payload, err = cli(project_dir, "bake", "-e", "dev")
    finally:
        tasks.write_text(original)
    assert code == 3, err
    assert payload["ok"] is False and payload["tool"] == "packer"
    said = "\n".join(payload["output_tail"])
    assert "Deliberately failing step" in said or "/bin/false" in said
    assert "FAILED" in said or "fatal" in said

    # Other tests' fleets share the account: what counts is what this bake started.
    assert running_instances(ec2) - before == set()
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    groups = ec2.describe_security_groups()["SecurityGroups"]
    assert [g["GroupName"] for g in groups if g["GroupName"].startswith("packer_")] == []
    build = project_dir / ".baker/build/dev"
    assert (build / "ami.pkr.hcl").is_file() and (build / "build.log").is_file(), "build folder kept"
    for path in files_under(build):
        assert VAULT_PASSWORD.encode() not in path.read_bytes(), path
    assert VAULT_PASSWORD not in err


def test_render_writes_and_validates_the_template_without_baking(project_dir, local_cloud):
    ec2 = local_cloud.client("ec2")
    before = len(ec2.describe_images(Owners=["self"])["Images"])
    code, payload, err = cli(project_dir, "render", "-e", "staging")
    assert code == 0, err
    template = Path(payload["template"])
    assert template == project_dir / ".baker/build/staging/ami.pkr.hcl" and template.is_file()
    assert Path(payload["variables"]).is_file()
    assert payload["packer_version"] == "1.6.6" and payload["required_plugins"] is False
    assert payload["validated"] == "syntax"  # --local: the build host's key exists only during a bake
    assert '"baker:baked-for" = "staging"' in template.read_text()
    assert len(ec2.describe_images(Owners=["self"])["Images"]) == before


def test_copies_to_other_regions_carry_the_tags_and_the_content(project_dir, local_cloud, vault_password):
    saved = (project_dir / "environments/dev.yml").read_text()
    edit_env(project_dir, "dev", lambda d: d.setdefault("bake", {}).update(copy_to_regions=["us-west-2"]))
    try:
        result = bake(project_dir, local_cloud)
    finally:
        (project_dir / "environments/dev.yml").write_text(saved)
    assert set(result["amis"]) == {"us-east-1", "us-west-2"}
    home = tags_of(image(local_cloud.client("ec2"), result["ami_id"]))
    copy_id = result["amis"]["us-west-2"]
    copy = tags_of(image(local_cloud.client("ec2", region="us-west-2"), copy_id))
    assert {k: copy.get(k) for k in PROVENANCE} == {k: home[k] for k in PROVENANCE}
    root = local_cloud.build_host.image_root(copy_id)
    assert root is not None and dpkg_version(root, "hello-web") == result["version"]


# ---------------------------------------------------------------- layered images: the snapshot path


@pytest.fixture(scope="module")
def layered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project with two layers and the app layer built on a snapshot (no vault)."""
    need_tools("ansible-playbook", "dpkg-deb", "git", "losetup", "mkfs.ext4", "sfdisk")
    root = copy_project(
        tmp_path_factory.mktemp("layered-project"), "environments", "packer", "ansible", "examples/hello-web"
    )
    defaults = root / "environments" / "defaults.yml"
    data = yaml.safe_load(defaults.read_text())
    data["bake"]["layers"] = {
        "base": {"roles": ["hardening"]},
        "app": {"roles": ["app_install", "app_config", "app_service", "hardening"]},
    }
    data["bake"]["app_layer"] = "snapshot"
    defaults.write_text(yaml.safe_dump(data))
    commit_all(root)
    return root


@pytest.fixture(scope="module")
def uploaded_base(layered_dir, local_cloud, debian_rootfs) -> Iterator[dict[str, str]]:
    """The base layer of ``layered_dir``, found in the cache: an image registered on a copy of the
    local source AMI's root snapshot (a GPT disk of the build host's root filesystem), tagged with
    the base recipe a dry run names. No Packer run: the base bake has its own tests."""
    code, dry, err = cli(layered_dir, "bake", "-e", "dev", "--dry-run")
    assert code == 0, err
    ec2 = local_cloud.client("ec2")
    source = image(ec2, dry["source_ami"])
    root = next(m for m in source["BlockDeviceMappings"] if m["DeviceName"] == source["RootDeviceName"])
    source_snap = root["Ebs"]["SnapshotId"]
    # the source snapshot takes the root filesystem's disk as its blocks when first read
    assert local_cloud.client("ebs").list_snapshot_blocks(SnapshotId=source_snap)["Blocks"]
    # a base bake's root snapshot is its own and carries the image's tags (the template's snapshot_tags)
    base_tags = {"baker:app": "hello-web", "baker:recipe": dry["base"]["recipe"], "baker:layer": "base"}
    tags = [{"Key": k, "Value": v} for k, v in base_tags.items()]
    snap = ec2.copy_snapshot(SourceSnapshotId=source_snap, SourceRegion="us-east-1")["SnapshotId"]
    ec2.create_tags(Resources=[snap], Tags=tags)
    ami = ec2.register_image(
        Name=f"hello-web-base-{layered_dir.name}",
        RootDeviceName=source["RootDeviceName"],
        Architecture="x86_64",
        VirtualizationType="hvm",
        EnaSupport=True,
        BlockDeviceMappings=[{"DeviceName": source["RootDeviceName"], "Ebs": {"SnapshotId": snap}}],
    )["ImageId"]
    ec2.create_tags(Resources=[ami], Tags=tags)
    yield {"ami_id": ami, "snapshot_id": snap, "recipe": dry["base"]["recipe"]}
    for cached in layers.cache_dir().glob(f"{snap}.img*"):  # what the snapshot path fetched of it
        cached.unlink()
    ec2.deregister_image(ImageId=ami)
    ec2.delete_snapshot(SnapshotId=snap)


def left_behind(cache: Path) -> dict[str, Any]:
    """Loop devices on baker's files, mounts of a layer's working copy, unfinished snapshots."""
    loops = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "BACK-FILE"], capture_output=True, text=True
    )
    mounts = Path("/proc/self/mounts").read_text()
    return {
        "loops": [ln for ln in loops.stdout.splitlines() if "baker-layer-" in ln or str(cache) in ln],
        "mounts": [ln for ln in mounts.splitlines() if "baker-layer-" in ln],
    }


def test_the_snapshot_app_layer_runs_no_instance_and_writes_only_changed_blocks_on_the_base(
    layered_dir, local_cloud, uploaded_base
):
    for cached in layers.cache_dir().glob(f"{uploaded_base['snapshot_id']}.img*"):
        cached.unlink()  # the first fetch of this base, whichever test ran before
    ec2 = local_cloud.client("ec2")
    direct = local_cloud.client("ebs")

    def instances() -> int:
        return sum(len(r["Instances"]) for r in ec2.describe_instances()["Reservations"])

    before = instances()
    result = bake(layered_dir, local_cloud)
    assert result["base"] == {**result["base"], "ami_id": uploaded_base["ami_id"], "cached": True}
    assert result["app_layer"] == "snapshot" and result["cached"] is False
    assert instances() == before  # no RunInstances: no Packer, no build instance

    ami = image(ec2, result["ami_id"])
    tags = tags_of(ami)
    assert tags["baker:base-ami"] == uploaded_base["ami_id"]
    assert tags["baker:base-recipe"] == uploaded_base["recipe"]
    assert tags["baker:recipe"] == result["recipe"] and tags["baker:version"] == result["version"]
    assert "ebs direct" in tags["baker:builder"] and "ansible-core" in tags["baker:builder"]
    assert ami["Architecture"] == "x86_64" and ami["RootDeviceName"] == "/dev/xvda"
    root_snap = ami["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    assert root_snap != uploaded_base["snapshot_id"]
    snap = ec2.describe_snapshots(SnapshotIds=[root_snap])["Snapshots"][0]
    assert snap["State"] == "completed" and tags_of(snap)["baker:base-ami"] == uploaded_base["ami_id"]

    figures = result["snapshot"]
    assert figures["base_fetch"]["cached"] is False and figures["base_fetch"]["bytes"] > 0
    changed = direct.list_changed_blocks(
        FirstSnapshotId=uploaded_base["snapshot_id"], SecondSnapshotId=root_snap
    )
    assert 0 < len(changed["ChangedBlocks"]) == figures["changed_blocks"], figures
    assert figures["bytes_written"] < 0.02 * figures["volume_bytes"], figures
    assert left_behind(layers.cache_dir()) == {"loops": [], "mounts": []}

    # the same commit again: the app layer's recipe is a cache hit
    again = bake(layered_dir, local_cloud)
    assert again["cached"] is True and again["ami_id"] == result["ami_id"]
    # and as CI runs it, a new process answered from the receipt: the base by its recipe, then the
    # app layer on it, the same result, no configuration models loaded
    hit, loaded = bake_process(layered_dir)
    assert {k: v for k, v in hit.items() if k != "duration"} == {
        k: v for k, v in again.items() if k != "duration"
    }
    assert loaded == [], f"a cache hit imported {loaded}"


def test_an_interrupted_block_upload_leaves_no_mount_loop_device_or_pending_snapshot(
    layered_dir, local_cloud, uploaded_base, tmp_path, monkeypatch
):
    app = layered_dir / "examples/hello-web/hello_web.py"
    app.write_text(app.read_text() + f"\n# a one-line change {tmp_path.name}\n")
    git(layered_dir, "commit", "-qam", "a one-line change")
    ec2 = local_cloud.client("ec2")
    put = ebs.Upload.put

    def interrupted(self: Any, path: Path, indexes: Any, **kwargs: Any) -> int:
        put(self, path, list(indexes)[:1], **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ebs.Upload, "put", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bake(layered_dir, local_cloud)
    pending = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "status", "Values": ["pending"]}])
    assert pending["Snapshots"] == []
    children = ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "tag:baker:base-ami", "Values": [uploaded_base["ami_id"]]}]
    )
    head = git(layered_dir, "rev-parse", "HEAD")
    assert not [i for i in children["Images"] if tags_of(i).get("baker:git-sha") == head]
    assert left_behind(layers.cache_dir()) == {"loops": [], "mounts": []}

    # the base's blocks were fetched whole before the upload began: the next bake reads them from disk
    snap = uploaded_base["snapshot_id"]
    assert {p.name for p in layers.cache_dir().glob(f"{snap}.img*")} == {
        f"{snap}.img",
        f"{snap}.img.complete",
    }
