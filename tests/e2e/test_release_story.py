"""The CI story, told through the `baker` command as a CI job or an operator types it.

The environment bakes layered images (``bake.layers``) with the app layer written straight to EBS
(``app_layer: snapshot``), as a per-commit pipeline does. A fresh environment is released (the base
baked by Packer, the app layer on it without an instance, verify on a booted instance, first
deploy), released again (both recipes cache hits, nothing rebaked or re-verified), then released
with a runtime setting that breaks the app's /healthz: the live instances' real health checks fail
and baker rolls back to the good release, its AMI and its runtime. Every step is a `python -m baker
--local --output json ...` child process against the session's local cloud; the test only looks at
what AWS then says.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from baker import layers
from baker.local import cloud
from tests.conftest import commit_all, copy_project, git, need_tools
from tests.harness import Baker
from tests.livefleet import Users, listener_port

pytestmark = pytest.mark.e2e

ENV = "e2e"  # its own Terraform state and fleet: the integration tests' dev and staging stay theirs
NAME = "hello-web-e2e"


#: the base: what does not depend on the app build; the app layer: the .deb and its configuration
LAYERS = {
    "base": {"roles": ["hardening"]},
    "app": {"roles": ["app_install", "app_config", "app_service", "hardening"]},
}


@pytest.fixture(scope="module")
def baker(local_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baker]:
    need_tools("packer", "ansible-playbook", "dpkg-deb", "git", "ssh-keygen", "terraform", "losetup")
    assert local_cloud.build_host  # the root filesystem, fetched from outside the namespace if not cached
    parts = ("environments", "packer", "ansible", "terraform", "examples/hello-web")
    root = copy_project(tmp_path_factory.mktemp("e2e-project"), *parts)
    (root / "environments" / f"{ENV}.yml").write_text(
        yaml.safe_dump(
            {
                "aws": {"region": "us-east-1"},
                "bake": {
                    "ansible_vars": {"hello_greeting": "hello from e2e"},
                    "layers": LAYERS,
                    "app_layer": "snapshot",
                },
                "deploy": {
                    "backend": {
                        "bucket": "baker-tfstate-123456789012",
                        "key": f"hello-web/{ENV}.tfstate",
                        "region": "us-east-1",
                    },
                    "variables": {"name": NAME, "health_check_interval": 5, "deregistration_delay": 5},
                },
            }
        )
    )
    # the next environment in another account and region (promote.json's share and copy)
    (root / "environments" / f"{ENV}-west.yml").write_text(
        yaml.safe_dump(
            {
                "aws": {"region": "us-west-2", "account_id": "210987654321"},
                # an AMI is promoted unchanged: the image settings (the layers too) match e2e's
                "bake": {
                    "ansible_vars": {"hello_greeting": "hello from e2e"},
                    "layers": LAYERS,
                    "app_layer": "snapshot",
                },
                "promote_from": ENV,
                "deploy": {
                    "backend": {
                        "bucket": "baker-tfstate-210987654321",
                        "key": f"hello-web/{ENV}-west.tfstate",
                        "region": "us-west-2",
                    },
                },
            }
        )
    )
    commit_all(root)
    git(root, "tag", "v1.4.0")
    yield Baker(root)
    # the bases' root snapshots the snapshot path fetched into the runner's cache
    ec2 = local_cloud.client("ec2")
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "tag:baker:layer", "Values": ["base"]}])
    for image in found["Images"]:
        for mapping in image["BlockDeviceMappings"]:
            for cached in layers.cache_dir().glob(f"{mapping.get('Ebs', {}).get('SnapshotId')}.img*"):
                cached.unlink()


def fleet(local_cloud: Any) -> dict[str, str]:
    """instance id -> AMI of the group's in-service instances whose targets are healthy."""
    asg = local_cloud.client("autoscaling")
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[NAME])["AutoScalingGroups"][0]
    ids = [i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"]
    elb = local_cloud.client("elbv2")
    tg = elb.describe_target_groups(Names=[f"{NAME}-tg"])["TargetGroups"][0]["TargetGroupArn"]
    healthy = {
        t["Target"]["Id"]
        for t in elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        if t["TargetHealth"]["State"] == "healthy"
    }
    reservations = local_cloud.client("ec2").describe_instances(InstanceIds=ids)["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    return {i["InstanceId"]: i["ImageId"] for i in instances if i["InstanceId"] in healthy}


def answers(local_cloud: Any, path: str = "/version") -> set[str]:
    """What users get from the fleet's load balancer (its listener on port 80), 10 requests."""
    users = Users(listener_port(local_cloud.client("elbv2"), local_cloud.endpoint, f"{NAME}-lb"), path)
    return {f"{code} {body}" for code, body in (users.get() for _ in range(10))}


def run_instances(local_cloud: Any) -> int:
    """RunInstances calls the emulator has seen under the example roles (enforcement records all)."""
    return sum(c["action"] == "ec2:RunInstances" for c in cloud.iam_calls(local_cloud.state_dir)["calls"])


@pytest.fixture(scope="module")
def released(baker: Baker, local_cloud: Any) -> dict[str, Any]:
    """The release story as CI runs it, and what baker and AWS said at each step: a first release,
    the same release again, and a release whose app fails /healthz. It leaves the first release's
    AMI live and healthy, where the operator story starts."""
    told: dict[str, Any] = {}
    # 1. the first release: bake, then the first deploy creates the fleet and waits for it
    told["first"] = baker("release", "-e", ENV)
    told["first_fleet"] = fleet(local_cloud)
    # 2. released again, nothing changed
    told["again"] = baker("release", "-e", ENV)
    told["again_fleet"] = fleet(local_cloud)
    # 3. a release whose app really fails /healthz (a runtime setting: same AMI, no knob)
    env_file = baker.project / "environments" / f"{ENV}.yml"
    saved = env_file.read_text()
    data = yaml.safe_load(saved)
    data["runtime"] = {"env": {"HELLO_UNHEALTHY": "1"}}
    env_file.write_text(yaml.safe_dump(data))
    # the cloud's refresh gives up on unhealthy replacements after 8 s instead of 30 (a quicker story)
    told["quicker"] = baker("local", "up", "--no-rootfs", "--refresh-timeout", "8", local=False)
    try:
        told["failed"] = baker("release", "-e", ENV)
    finally:
        env_file.write_text(saved)
        baker("local", "up", "--no-rootfs", "--refresh-timeout", "30", local=False)
    told["failed_fleet"] = fleet(local_cloud)
    return told


def test_release_cache_hit_and_automatic_rollback(released: dict[str, Any]):
    # 1. the first release baked the base (Packer) and the app layer on it, and its first deploy
    # created the fleet
    code, first, err = released["first"]
    assert code == 0, err
    good = first["ami_id"]
    assert first["outcome"] == "healthy" and first["previous_ami_id"] is None
    assert first["bake"]["cached"] is False and first["bake"]["version"] == "1.4.0"
    assert first["bake"]["app_layer"] == "snapshot" and first["bake"]["base"]["cached"] is False
    assert first["bake"]["snapshot"]["changed_blocks"] > 0
    live = released["first_fleet"]
    assert len(live) == 2 and set(live.values()) == {good}

    # 2. released again, nothing changed: the same AMI by recipe, no Packer run, fleet untouched
    code, again, err = released["again"]
    assert code == 0, err
    assert again["bake"]["cached"] is True and again["ami_id"] == good
    assert again["bake"]["base"] == {**first["bake"]["base"], "cached": True}
    assert "[packer]" not in err, "no Packer run on a cache hit"
    assert released["again_fleet"] == live

    # 3. the real health checks of the live instances caught the broken app, and the rollback
    # restored the runtime it ran with
    code, _, err = released["quicker"]
    assert code == 0, err
    code, failed, err = released["failed"]
    assert code == 4, err
    assert failed["ok"] is False and failed["outcome"] == "rolled_back"
    assert failed["rollback"]["ami_id"] == good and failed["rollback"]["outcome"] == "healthy"
    assert failed["rollback"]["runtime_restored"] is True
    assert f"rolled back: {good} is live" in failed["error"]
    after = released["failed_fleet"]
    assert len(after) == 2 and set(after.values()) == {good}


def commit(baker: Baker, line: str) -> None:
    """A one-line change of the example app, committed (a new version, a new .deb)."""
    app = baker.project / "examples/hello-web/hello_web.py"
    app.write_text(app.read_text() + f"# {line}\n")
    git(baker.project, "commit", "-qam", line)


def test_the_operator_story_pin_refusals_unpin_rollback_history_status_gc(
    baker: Baker, local_cloud: Any, released: dict[str, Any]
):
    """From where the release story leaves the environment (``released``): a commit's app layer
    baked on the cached base without an instance and deployed (users get its /version), v1 pinned
    for an incident, a release and a promotion into the pinned environment refused (6), unpinned,
    rolled back to v2; history and status name the base; gc --apply keeps what is live and previous
    (protected from deregistration) and the base they run on, and walks an image nobody used
    through deprecated, disabled and deregistered with its snapshots, one run each."""
    v1 = released["first"][1]["ami_id"]
    base = released["first"][1]["bake"]["base"]["ami_id"]
    code, history, err = baker("history", "-e", ENV)
    assert code == 0, err
    assert history["releases"][0]["ami_id"] == v1, "the release story left v1 live"
    assert history["releases"][0]["base_ami_id"] == base
    ec2 = local_cloud.client("ec2")
    # an image nobody deploys (what gc is for): v1's app layer rebaked alone on the cached base
    code, unused, err = baker("bake", "-e", ENV, "--layer", "app", "--force")
    assert code == 0, err
    assert unused["base"] == {**released["first"][1]["bake"]["base"], "cached": True}
    broken = unused["ami_id"]
    assert broken != v1 and unused["version"] == "1.4.0"

    # v2: a one-line change, committed; the per-commit bake writes only the app layer, on the cached
    # base, with no Packer run and no instance
    commit(baker, "a one-line change")
    launched = run_instances(local_cloud)
    code, baked, err = baker("bake", "-e", ENV)
    assert code == 0, err
    assert "[packer]" not in err and run_instances(local_cloud) == launched
    assert baked["base"]["ami_id"] == base and baked["base"]["cached"] is True
    v2, version = baked["ami_id"], baked["version"]
    assert version != "1.4.0"
    (image,) = ec2.describe_images(ImageIds=[v2])["Images"]
    assert {t["Key"]: t["Value"] for t in image["Tags"]}["baker:base-ami"] == base
    (base_image,) = ec2.describe_images(ImageIds=[base])["Images"]
    assert base_image["Name"].startswith("hello-web-base-e2e-"), "a base is named for its layer"
    base_root, root = (i["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"] for i in (base_image, image))
    changed = local_cloud.client("ebs").list_changed_blocks(FirstSnapshotId=base_root, SecondSnapshotId=root)
    figures = baked["snapshot"]
    assert figures["base_fetch"]["cached"] is True, "the base was fetched once, by the first release"
    assert 0 < len(changed["ChangedBlocks"]) == figures["changed_blocks"], figures
    assert figures["bytes_written"] < 0.02 * figures["volume_bytes"], figures
    code, deployed, err = baker("deploy", "-e", ENV, "--ami", v2)
    assert (code, deployed["outcome"], deployed["previous_ami_id"]) == (0, "healthy", v1), err
    assert deployed["base_ami_id"] == base
    assert answers(local_cloud) == {f"200 {version}"}, "users get the new commit's /version"

    # 3 a.m.: pin v1
    code, pinned, err = baker("pin", "-e", ENV, "--ami", v1, "--reason", "incident 4711")
    assert (code, pinned["outcome"], pinned["ami_id"]) == (0, "healthy", v1), err
    assert set(fleet(local_cloud).values()) == {v1}

    # a release into the pinned environment is refused before anything is baked; so is a promotion
    code, refused, err = baker("release", "-e", ENV)
    assert code == 6 and refused["rule"] == "pinned" and "incident 4711" in refused["error"], err
    assert f"baker unpin -e {ENV}" in refused["error"]
    code, refused, err = baker("promote", "--from", "dev", "--to", ENV)
    assert code == 6 and refused["rule"] == "pinned", err

    code, status, err = baker("status", "-e", ENV)
    assert code == 0, err
    (mine,) = status["environments"]
    assert mine["pinned"]["ami_id"] == v1 and mine["ami_id"] == v1 and mine["drift"] is False
    assert mine["base_ami_id"] == base

    # the incident is over: unpin, roll back to the previous good release (v2)
    code, unpinned, err = baker("unpin", "-e", ENV)
    assert code == 0 and unpinned["unpinned"]["reason"] == "incident 4711", err
    code, back, err = baker("rollback", "-e", ENV)
    assert (code, back["outcome"], back["ami_id"], back["previous_ami_id"]) == (0, "healthy", v2, v1), err
    assert set(fleet(local_cloud).values()) == {v2}

    code, history, err = baker("history", "-e", ENV, "--limit", "5")
    assert code == 0, err
    steps = [(r["kind"], r["ami_id"], r["outcome"]) for r in history["releases"]]
    assert steps == [
        ("rollback", v2, "healthy"),
        ("unpin", v1, "done"),
        ("pin", v1, "healthy"),
        ("deploy", v2, "healthy"),
        ("rollback", v1, "healthy"),
    ]
    assert all(r["by"] and r["at"] for r in history["releases"])
    assert {r["base_ami_id"] for r in history["releases"] if r["kind"] != "unpin"} == {base}

    # v2 promoted to the next account (shared, copied into us-west-2, tagged; not deployed there)
    code, promoted, err = baker("promote", "--from", ENV, "--to", f"{ENV}-west", "--no-deploy")
    assert code == 0 and promoted["source_ami_id"] == v2, err
    assert promoted["shared_with"] == ["210987654321"] and promoted["copies"]["us-west-2"] != v2

    code, status, err = baker("status", "-e", ENV)
    assert (
        code == 0
        and status["environments"][0]["drift"] is False
        and status["environments"][0]["pinned"] is None
    )

    # gc keeps the live AMI and the previous one (protected) and their base, and takes the unused
    # one a stage a run
    snapshots = [
        m["Ebs"]["SnapshotId"]
        for m in ec2.describe_images(ImageIds=[broken])["Images"][0]["BlockDeviceMappings"]
    ]
    ages = ("--keep", "1", "--older-than", "0", "--disable-after", "0", "--delete-after", "0")
    code, dry, err = baker("gc", "-e", ENV, *ages)
    assert code == 0, err
    assert broken in {d["ami_id"] for d in dry["deprecated"]}
    (unchanged,) = ec2.describe_images(ImageIds=[broken])["Images"]
    assert "DeprecationTime" not in unchanged, "a dry run changes nothing"
    for stage in ("deprecated", "disabled"):
        code, done, err = baker("gc", "-e", ENV, *ages, "--apply")
        assert code == 0 and broken in {d["ami_id"] for d in done[stage]}, err
    assert {p["ami_id"] for p in done["protected"]} == set(), "protected by the first run already"
    live = ec2.describe_images(ImageIds=[v2, v1])["Images"]
    assert {i["DeregistrationProtection"] for i in live} == {"enabled"}
    code, done, err = baker("gc", "-e", ENV, *ages, "--apply")
    assert code == 0, err
    kept = {k["ami_id"]: k["reason"] for k in done["kept"]}
    assert v2 in kept and v1 in kept, kept
    (kept_base,) = [k["reasons"] for k in done["kept"] if k["ami_id"] == base]
    assert any("the base image of kept" in why for why in kept_base), kept_base
    assert broken in {d["ami_id"] for d in done["deleted"]} and done["bytes_freed"] > 0
    left = ec2.describe_images(Filters=[{"Name": "image-id", "Values": [broken]}])["Images"]
    assert left == []
    alive = ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": snapshots}])["Snapshots"]
    assert alive == [], "its snapshots went with it"
