"""baker gc against the local cloud: what it keeps (and why), the stages it walks the rest through
(deprecated, disabled: no launch, deregistered with its snapshots), the deregistration protection of
what runs, and an interrupted run finished by the next one.

Fleets, instances and launch templates are made through boto3 (tests/integration/operator_cloud.py):
gc reads what AWS says, and every kept-reason needs its own kind of holder, cheaply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from baker import images, provenance
from baker.cli import main
from baker.cli.app import App
from baker.config import load_project
from baker.gc import GC
from tests.integration import operator_cloud as oc

pytestmark = pytest.mark.integration

APP = "ops-gc"
DEV, PROD = ("us-east-1", "123456789012"), ("us-west-2", "210987654321")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return oc.project(tmp_path_factory.mktemp("gc-project"), app=APP)


@pytest.fixture(scope="module")
def amis(local_cloud: Any, root: Path) -> dict[str, str]:
    """One AMI per reason to keep it, and some that nothing holds."""
    dev, prod, east2 = local_cloud.aws(*DEV), local_cloud.aws(*PROD), local_cloud.aws("us-east-2", DEV[1])
    bake = {provenance.RECIPE: "r-1", provenance.BUILT_AT: "2026-11-01T00:00:00Z"}
    a = {name: oc.register(dev, name, app=APP) for name in ("old", "prev", "pinned", "instance", "default")}
    a["live"] = oc.register(dev, "live", app=APP, **bake)
    a["junk1"], a["junk2"] = oc.register(dev, "junk1", app=APP), oc.register(dev, "junk2", app=APP)
    a["live-copy"] = oc.register(east2, "live", app=APP, **bake)  # the bake's copy in ops-stage's copy region
    a["east2-junk"] = oc.register(east2, "junk", app=APP)
    a["other-app"] = oc.register(dev, "x", app="someone-else")
    a["copy"] = oc.register(prod, "src", app=APP)
    a["source"] = oc.register(
        dev, "src", app=APP, **{provenance.PROMOTED_TO: f"ops-prod:us-west-2:{a['copy']}"}
    )
    prod.client("ec2").create_tags(
        Resources=[a["copy"]],
        Tags=[{"Key": provenance.PROMOTED_FROM, "Value": f"{a['source']} us-east-1 ops-stage"}],
    )
    a["prod-junk"] = oc.register(prod, "junk", app=APP)

    book = oc.ledger(dev, "ops-dev", app=APP)
    for name in ("old", "prev", "live"):
        oc.record(book, "deploy", a[name], version=name)
    oc.record(book, "deploy", a["junk1"], outcome="rolled_back", version="junk1")  # never healthy
    oc.fleet(dev, f"{APP}-dev", a["live"], size=1)
    oc.ledger(dev, "ops-stage", app=APP).set_pin(a["pinned"], reason="incident 7", by="oncall")
    dev.client("ec2").run_instances(ImageId=a["instance"], MinCount=1, MaxCount=1, InstanceType="t3.micro")
    dev.client("ec2").create_launch_template(
        LaunchTemplateName=f"{APP}-by-hand", LaunchTemplateData={"ImageId": a["default"]}
    )
    oc.record(oc.ledger(prod, "ops-prod", app=APP), "promote", a["copy"], version="src")
    return a


def run(root: Path, *, apply: bool, **kwargs: Any) -> dict[str, Any]:
    project = load_project(root)
    envs = [project.environment(n) for n in project.environment_names()]
    return GC(project, envs, App(project_dir=str(root), local=True).aws, **kwargs).run(apply=apply)


def gc(root: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["--project", str(root), "--local", "--output", "json", "gc", *args])
    return code, json.loads(capsys.readouterr().out)


DOOMED = ("old", "junk1", "junk2", "east2-junk", "prod-junk")


def test_a_dry_run_says_what_goes_and_why_the_rest_stays(
    local_cloud: Any, amis: dict[str, str], root: Path, capsys: pytest.CaptureFixture
):
    code, out = gc(root, capsys, "--keep", "2", "--older-than", "0")
    assert code == 0 and out["dry_run"] is True
    assert out["deleted"] == [] and out["bytes_freed"] == 0, "the first stage deletes nothing"
    deprecated = {d["ami_id"] for d in out["deprecated"]}
    assert deprecated == {amis[n] for n in DOOMED}
    kept = {k["ami_id"]: k for k in out["kept"]}
    assert amis["other-app"] not in kept and amis["other-app"] not in deprecated, "only the app's AMIs"
    why = {name: " | ".join(kept[amis[name]]["reasons"]) for name in amis if amis[name] in kept}
    assert set(why) == {"prev", "pinned", "instance", "default", "live", "live-copy", "copy", "source"}
    assert "live in ops-dev" in why["live"] and "Auto Scaling group ops-gc-dev launches it" in why["live"]
    assert "the 2nd newest healthy AMI in ops-dev" in why["prev"]
    assert "pinned in ops-stage by oncall" in why["pinned"] and "incident 7" in why["pinned"]
    assert "used by instance i-" in why["instance"] and "(running)" in why["instance"]
    assert "launched within 14 days (last launch 20" in why["instance"], "LastLaunchedTime"
    assert "used by launch-template/lt-" in why["default"] and out["references"] is True
    assert f"the default version (1) of launch template {APP}-by-hand" in why["default"]
    assert "live in ops-prod" in why["copy"]
    assert f"the source of promoted copy {amis['copy']} (us-west-2), which is kept" in why["source"]
    assert f"a regional copy of kept {amis['live']}" in why["live-copy"]
    for k in out["kept"]:
        assert k["reason"] == k["reasons"][0]
    # what runs, may be rolled back to or is pinned gets deregistration protection
    assert {p["ami_id"] for p in out["protected"]} == {amis[n] for n in ("live", "prev", "pinned", "copy")}
    # nothing changed
    ec2 = local_cloud.client("ec2", *DEV)
    images_now = ec2.describe_images(ImageIds=[amis["junk1"], amis["old"], amis["live"]])["Images"]
    assert len(images_now) == 3 and {i["DeregistrationProtection"] for i in images_now} == {"disabled"}
    assert all("DeprecationTime" not in i for i in images_now)

    assert main(["--project", str(root), "--local", "gc", "--keep", "2", "--older-than", "0"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("dry run: would deregister 0 AMIs of ops-gc")
    assert "would deprecate 5" in text and "KEEP" in text and "DEPRECATED" in text
    assert "run with --apply" in text


def test_young_amis_are_kept_by_default(amis: dict[str, str], root: Path, capsys: pytest.CaptureFixture):
    code, out = gc(root, capsys)
    assert code == 0 and out["deleted"] == [] and out["bytes_freed"] == 0
    reasons = {k["ami_id"]: k["reasons"] for k in out["kept"]}
    assert any("younger than 14 days" in r for r in reasons[amis["junk1"]])


def test_e_narrows_where_gc_deletes_not_what_it_reads(
    amis: dict[str, str], root: Path, capsys: pytest.CaptureFixture
):
    code, out = gc(root, capsys, "-e", "ops-prod", "--keep", "2", "--older-than", "0")
    assert code == 0
    assert [d["ami_id"] for d in out["deprecated"]] == [amis["prod-junk"]]
    assert [p["ami_id"] for p in out["protected"]] == [amis["copy"]], "protection too only where gc cleans"
    kept = {k["ami_id"]: k["reasons"] for k in out["kept"]}
    assert any("outside the environments" in r for r in kept[amis["junk1"]])
    assert [p["deletable"] for p in out["places"] if p["region"] == "us-west-2"] == [True]
    code, out = gc(root, capsys, "-e", "nosuch")
    assert code == 2 and "nosuch" in out["error"]


def test_apply_walks_the_unused_through_its_stages_and_an_interrupted_run_is_finished_by_the_next(
    local_cloud: Any, amis: dict[str, str], root: Path, monkeypatch: pytest.MonkeyPatch
):
    """Three runs with both ages 0: deprecated, disabled (RunInstances refuses it), deregistered
    with its snapshots; the live AMI is protected from a deregistration by hand meanwhile."""
    doomed = {amis[n] for n in DOOMED}
    ages = {"keep": 2, "older_than_days": 0, "disable_after_days": 0, "delete_after_days": 0}
    first = run(root, apply=True, **ages)
    assert {d["ami_id"] for d in first["deprecated"]} == doomed and first["deleted"] == []
    ec2 = local_cloud.client("ec2", *DEV)
    junk = ec2.describe_images(ImageIds=[amis["junk1"]])["Images"][0]
    assert junk["DeprecationTime"] and provenance.GC_STAGE in {t["Key"] for t in junk["Tags"]}
    with pytest.raises(botocore.exceptions.ClientError) as protected:
        ec2.deregister_image(ImageId=amis["live"])
    assert protected.value.response["Error"]["Code"] == "OperationNotPermitted"

    second = run(root, apply=True, **ages)
    assert {d["ami_id"] for d in second["disabled"]} == doomed and second["deleted"] == []
    (junk,) = ec2.describe_images(ImageIds=[amis["junk1"]], IncludeDisabled=True)["Images"]
    assert junk["State"] == "disabled"
    with pytest.raises(botocore.exceptions.ClientError) as disabled:
        ec2.run_instances(ImageId=amis["junk1"], MinCount=1, MaxCount=1, InstanceType="t3.micro")
    assert disabled.value.response["Error"]["Code"] == "InvalidAMIID.Unavailable"

    snapshots: dict[str, list[str]] = {}
    for ami in doomed:
        image = next(
            i
            for region, account in (DEV, PROD, ("us-east-2", DEV[1]))
            for i in [images.get(local_cloud.aws(region, account).client("ec2"), ami, region)]
            if i is not None
        )
        snapshots[ami] = list(image.snapshots)
    real = images.deregister

    def killed_after_the_deregistration(ec2: Any, image: Any) -> list[str]:
        ec2.deregister_image(ImageId=image.id)  # the AMI is gone, its snapshots are not
        raise KeyboardInterrupt

    monkeypatch.setattr(images, "deregister", killed_after_the_deregistration)
    with pytest.raises(KeyboardInterrupt):
        run(root, apply=True, **ages)
    monkeypatch.setattr(images, "deregister", real)

    out = run(root, apply=True, **ages)
    assert out["dry_run"] is False
    assert out["snapshots_deleted"], "the first run's orphaned snapshots"
    orphaned = {s["snapshot_id"] for s in out["snapshots_deleted"]}
    assert {d["ami_id"] for d in out["deleted"]} | {
        ami for ami, snaps in snapshots.items() if set(snaps) <= orphaned
    } == doomed
    for ami, snaps in snapshots.items():
        region, account = (
            PROD if ami == amis["prod-junk"] else ("us-east-2", DEV[1]) if ami == amis["east2-junk"] else DEV
        )
        ec2 = local_cloud.client("ec2", region, account)
        assert ec2.describe_images(Filters=[{"Name": "image-id", "Values": [ami]}])["Images"] == []
        assert ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": snaps}])["Snapshots"] == []
    again = run(root, apply=True, **ages)
    assert again["deleted"] == [] and again["snapshots_deleted"] == [] and again["bytes_freed"] == 0
    kept = {k["ami_id"] for k in again["kept"]}
    assert kept == {
        amis[n] for n in ("prev", "pinned", "instance", "default", "live", "live-copy", "copy", "source")
    }
