"""baker's extensions to moto, through boto3 against the running local cloud's emulator.

Each test is something plain moto 5.2.5 gets wrong (see the docstrings of baker/local/moto/).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import botocore.exceptions
import pytest

from baker.local.moto.state import SOURCE_AMI_NAME, SOURCE_AMI_OWNER
from tests.conftest import REPO, copy_project
from tests.harness import wait_for

pytestmark = pytest.mark.integration
_names = itertools.count(1)


def source_ami(ec2: Any) -> dict[str, Any]:
    images = ec2.describe_images(
        Owners=[SOURCE_AMI_OWNER], Filters=[{"Name": "name", "Values": ["debian-12-amd64-*"]}]
    )["Images"]
    assert [i["Name"] for i in images] == [SOURCE_AMI_NAME]
    return images[0]


@pytest.fixture
def quick(local_cloud: Any) -> Iterator[None]:
    """Short health timings for one test, restored afterwards (other tests share the emulator)."""
    before = local_cloud.settings()
    local_cloud.settings(initial_seconds=1, refresh_timeout=5)
    try:
        yield
    finally:
        local_cloud.settings(**before)


@dataclass
class Fleet:
    """An Auto Scaling group behind a target group, launched from a template, as Terraform builds it."""

    ec2: Any
    asg: Any
    elb: Any
    name: str
    template_id: str
    target_group: str
    ami_v1: str

    def instances(self) -> list[dict[str, Any]]:
        groups = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])["AutoScalingGroups"]
        return groups[0]["Instances"]

    def targets(self) -> dict[str, str]:
        found = self.elb.describe_target_health(TargetGroupArn=self.target_group)["TargetHealthDescriptions"]
        return {t["Target"]["Id"]: t["TargetHealth"]["State"] for t in found}

    def images_of(self, ids: list[str]) -> set[str]:
        found = self.ec2.describe_instances(InstanceIds=ids)["Reservations"]
        return {i["ImageId"] for r in found for i in r["Instances"]}

    def new_image(self) -> str:
        """A baked image: CreateImage from one of the group's instances."""
        n = next(_names)
        return self.ec2.create_image(
            InstanceId=self.instances()[0]["InstanceId"], Name=f"{self.name}-ami-{n}"
        )["ImageId"]

    def new_version(self, ami_id: str) -> str:
        """What the Terraform provider does on an AMI change: a new version (UserData="" included)."""
        version = self.ec2.create_launch_template_version(
            LaunchTemplateId=self.template_id,
            LaunchTemplateData={"ImageId": ami_id, "InstanceType": "t3.micro", "UserData": ""},
        )["LaunchTemplateVersion"]["VersionNumber"]
        self.asg.update_auto_scaling_group(
            AutoScalingGroupName=self.name,
            LaunchTemplate={"LaunchTemplateId": self.template_id, "Version": str(version)},
        )
        return str(version)

    def refresh(self, **preferences: Any) -> str:
        prefs = {"MinHealthyPercentage": 50, **preferences}
        return self.asg.start_instance_refresh(AutoScalingGroupName=self.name, Preferences=prefs)[
            "InstanceRefreshId"
        ]

    def describe(self, refresh_id: str) -> dict[str, Any]:
        return self.asg.describe_instance_refreshes(
            AutoScalingGroupName=self.name, InstanceRefreshIds=[refresh_id]
        )["InstanceRefreshes"][0]

    def wait_refresh(self, refresh_id: str) -> tuple[dict[str, Any], list[str]]:
        """Follow a refresh to its end; returns the last description and every status seen."""
        seen: list[str] = []

        def done() -> dict[str, Any] | None:
            r = self.describe(refresh_id)
            if not seen or seen[-1] != r["Status"]:
                seen.append(r["Status"])
            ends = ("Successful", "Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed")
            return r if r["Status"] in ends else None

        return wait_for(f"refresh {refresh_id}", done), seen


@pytest.fixture
def fleet(local_cloud: Any) -> Fleet:
    ec2, asg, elb = (local_cloud.client(s) for s in ("ec2", "autoscaling", "elbv2"))
    name = f"fleet-{next(_names)}-{int(time.time() * 1000) % 100000}"
    ami = source_ami(ec2)["ImageId"]
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = [
        s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    ]
    tg = elb.create_target_group(
        Name=name, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="instance", HealthCheckPath="/healthz"
    )["TargetGroups"][0]["TargetGroupArn"]
    template = ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.micro"},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "Name", "Value": name}]}],
    )["LaunchTemplate"]["LaunchTemplateId"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=2,
        MaxSize=4,
        DesiredCapacity=2,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
        VPCZoneIdentifier=",".join(subnets[:2]),
        TargetGroupARNs=[tg],
        HealthCheckType="ELB",
    )
    return Fleet(ec2, asg, elb, name, template, tg, ami)


def test_source_ami_is_ebs_backed_in_every_region_and_account(local_cloud: Any) -> None:
    ids = set()
    for region, account in [("us-east-1", None), ("us-east-1", "210987654321"), ("eu-west-1", None)]:
        ec2 = local_cloud.client("ec2", region, account)
        image = source_ami(ec2)
        assert image["OwnerId"] == SOURCE_AMI_OWNER
        assert image["RootDeviceType"] == "ebs"
        assert image["RootDeviceName"] == "/dev/xvda"
        root = image["BlockDeviceMappings"][0]
        assert root["DeviceName"] == "/dev/xvda"
        assert ec2.describe_snapshots(SnapshotIds=[root["Ebs"]["SnapshotId"]])["Snapshots"]
        ids.add((region, image["ImageId"]))
    assert len({i for _, i in ids}) == 2, "one id per region, the same in every account"


def test_the_source_images_snapshot_holds_the_root_filesystem_as_a_disk(
    local_cloud: Any, debian_rootfs: Any
) -> None:
    ec2, ebs = local_cloud.client("ec2"), local_cloud.client("ebs")
    snapshot = source_ami(ec2)["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    listed = ebs.list_snapshot_blocks(SnapshotId=snapshot)
    assert listed["BlockSize"] == BLOCK and len(listed["Blocks"]) > 100
    first = listed["Blocks"][0]
    block = ebs.get_snapshot_block(
        SnapshotId=snapshot, BlockIndex=first["BlockIndex"], BlockToken=first["BlockToken"]
    )
    assert block["BlockData"].read()[512:520] == b"EFI PART", "GPT"


def test_instance_refresh_replaces_every_instance_and_the_target_group_follows(
    fleet: Fleet, quick: None
) -> None:
    old = [i["InstanceId"] for i in fleet.instances()]
    wait_for("the first instances to be healthy", lambda: set(fleet.targets().values()) == {"healthy"})
    new_ami = fleet.new_image()
    version = fleet.new_version(new_ami)

    refresh_id = fleet.refresh()
    last, seen = fleet.wait_refresh(refresh_id)

    assert last["Status"] == "Successful", last
    assert seen[0] in ("Pending", "InProgress") and "InProgress" in seen
    assert last["PercentageComplete"] == 100 and last["InstancesToUpdate"] == 0
    now = fleet.instances()
    ids = [i["InstanceId"] for i in now]
    assert len(ids) == 2 and not set(ids) & set(old)
    assert {i["LaunchTemplate"]["Version"] for i in now} == {version}
    assert fleet.images_of(ids) == {new_ami}
    wait_for("the new targets to be healthy", lambda: fleet.targets() == dict.fromkeys(ids, "healthy"))
    gone = fleet.ec2.describe_instances(InstanceIds=old)["Reservations"]
    assert {i["State"]["Name"] for r in gone for i in r["Instances"]} <= {"terminated", "shutting-down"}


def test_health_knob_drives_describe_target_health(fleet: Fleet, local_cloud: Any, quick: None) -> None:
    ids = [i["InstanceId"] for i in fleet.instances()]
    wait_for("healthy targets", lambda: fleet.targets() == dict.fromkeys(ids, "healthy"))
    try:
        local_cloud.set_health(fleet.ami_v1, "unhealthy")
        assert fleet.targets() == dict.fromkeys(ids, "unhealthy")
        found = fleet.elb.describe_target_health(TargetGroupArn=fleet.target_group)[
            "TargetHealthDescriptions"
        ]
        assert {t["TargetHealth"]["Reason"] for t in found} == {"Target.FailedHealthChecks"}
        local_cloud.set_health(fleet.ami_v1, "initial")
        assert fleet.targets() == dict.fromkeys(ids, "initial")
    finally:
        local_cloud.set_health(fleet.ami_v1, None)
    assert fleet.targets() == dict.fromkeys(ids, "healthy")


def test_refresh_fails_when_the_new_instances_stay_unhealthy(
    fleet: Fleet, local_cloud: Any, quick: None
) -> None:
    bad_ami = fleet.new_image()
    fleet.new_version(bad_ami)
    local_cloud.set_health(bad_ami, "unhealthy")
    try:
        last, _ = fleet.wait_refresh(fleet.refresh())
        assert last["Status"] == "Failed"
        assert "healthy" in last["StatusReason"]
        states = fleet.targets()
        bad = [i["InstanceId"] for i in fleet.instances() if fleet.images_of([i["InstanceId"]]) == {bad_ami}]
        assert bad and {states[i] for i in bad} == {"unhealthy"}
    finally:
        local_cloud.set_health(bad_ami, None)


def test_auto_rollback_puts_the_previous_version_back(fleet: Fleet, local_cloud: Any, quick: None) -> None:
    bad_ami = fleet.new_image()
    fleet.new_version(bad_ami)
    local_cloud.set_health(bad_ami, "unhealthy")
    try:
        last, seen = fleet.wait_refresh(fleet.refresh(AutoRollback=True))
    finally:
        local_cloud.set_health(bad_ami, None)
    assert last["Status"] == "RollbackSuccessful" and "RollbackInProgress" in seen
    ids = [i["InstanceId"] for i in fleet.instances()]
    assert fleet.images_of(ids) == {fleet.ami_v1}
    assert {i["LaunchTemplate"]["Version"] for i in fleet.instances()} == {"1"}
    wait_for(
        "the rolled back targets to be healthy", lambda: fleet.targets() == dict.fromkeys(ids, "healthy")
    )


def test_a_running_refresh_blocks_another_and_can_be_cancelled(
    fleet: Fleet, local_cloud: Any, quick: None
) -> None:
    slow_ami = fleet.new_image()
    fleet.new_version(slow_ami)
    local_cloud.set_health(slow_ami, "initial")
    try:
        first = fleet.refresh()
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            fleet.refresh()
        assert exc.value.response["Error"]["Code"] == "InstanceRefreshInProgress"
        assert (
            fleet.asg.cancel_instance_refresh(AutoScalingGroupName=fleet.name)["InstanceRefreshId"] == first
        )
        last, _ = fleet.wait_refresh(first)
        assert last["Status"] == "Cancelled"
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            fleet.asg.cancel_instance_refresh(AutoScalingGroupName=fleet.name)
        assert exc.value.response["Error"]["Code"] == "ActiveInstanceRefreshNotFound"
    finally:
        local_cloud.set_health(slow_ami, None)


def test_terminated_instances_leave_the_target_group_and_replacements_join(fleet: Fleet, quick: None) -> None:
    first, second = (i["InstanceId"] for i in fleet.instances())
    fleet.asg.terminate_instance_in_auto_scaling_group(InstanceId=first, ShouldDecrementDesiredCapacity=False)
    fleet.ec2.terminate_instances(InstanceIds=[second])
    ids = [i["InstanceId"] for i in fleet.instances()]
    assert len(ids) == 2 and first not in ids and second not in ids
    assert set(fleet.targets()) == set(ids)


def test_launch_template_tags_stay_out_of_version_data(fleet: Fleet) -> None:
    version = fleet.ec2.describe_launch_template_versions(LaunchTemplateId=fleet.template_id)[
        "LaunchTemplateVersions"
    ][0]
    assert "TagSpecifications" not in version["LaunchTemplateData"]
    tags = fleet.ec2.describe_launch_templates(LaunchTemplateIds=[fleet.template_id])["LaunchTemplates"][0][
        "Tags"
    ]
    assert {"Key": "Name", "Value": fleet.name} in tags


def test_instances_report_the_version_they_came_from(fleet: Fleet) -> None:
    fleet.new_version(fleet.new_image())
    fleet.ec2.modify_launch_template(LaunchTemplateId=fleet.template_id, DefaultVersion="2")
    fleet.asg.set_desired_capacity(AutoScalingGroupName=fleet.name, DesiredCapacity=3)
    versions = sorted(i["LaunchTemplate"]["Version"] for i in fleet.instances())
    assert versions == ["1", "1", "2"]


def test_copy_image_keeps_tags_when_asked(local_cloud: Any, fleet: Fleet) -> None:
    ami = fleet.new_image()
    tags = [{"Key": "baker:version", "Value": "1.2.3"}, {"Key": "team", "Value": "platform"}]
    fleet.ec2.create_tags(Resources=[ami], Tags=tags)
    west = local_cloud.client("ec2", "eu-west-1")
    kept = west.copy_image(SourceImageId=ami, SourceRegion="us-east-1", Name="copy-kept", CopyImageTags=True)
    bare = west.copy_image(SourceImageId=ami, SourceRegion="us-east-1", Name="copy-bare")
    marked = west.copy_image(
        SourceImageId=ami,
        SourceRegion="us-east-1",
        Name="copy-marked",
        TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "baker:promoted-to", "Value": "prod"}]}
        ],
    )

    def tags_of(image_id: str) -> list[dict[str, str]]:
        return sorted(west.describe_images(ImageIds=[image_id])["Images"][0].get("Tags", []), key=str)

    assert tags_of(kept["ImageId"]) == sorted(tags, key=str)
    assert tags_of(bare["ImageId"]) == []
    assert tags_of(marked["ImageId"]) == [{"Key": "baker:promoted-to", "Value": "prod"}]


def test_create_image_is_ebs_backed_with_tagged_snapshots(fleet: Fleet) -> None:
    ami = fleet.ec2.create_image(
        InstanceId=fleet.instances()[0]["InstanceId"],
        Name=f"{fleet.name}-tagged",
        TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "baker:app", "Value": "hello-web"}]},
            {"ResourceType": "snapshot", "Tags": [{"Key": "baker:app", "Value": "hello-web"}]},
        ],
    )["ImageId"]
    image = fleet.ec2.describe_images(ImageIds=[ami])["Images"][0]
    assert image["RootDeviceType"] == "ebs" and image["RootDeviceName"] == "/dev/xvda"
    snapshot = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    snap_tags = fleet.ec2.describe_snapshots(SnapshotIds=[snapshot])["Snapshots"][0].get("Tags", [])
    assert {"Key": "baker:app", "Value": "hello-web"} in snap_tags


def test_images_keep_what_their_root_volume_is(local_cloud: Any) -> None:
    """As Packer bakes with encrypt_boot: an encrypted gp3 root -> an encrypted image, and copies of it."""
    ec2 = local_cloud.client("ec2")
    source = source_ami(ec2)["ImageId"]
    instance = ec2.run_instances(
        ImageId=source,
        MinCount=1,
        MaxCount=1,
        BlockDeviceMappings=[
            {
                "DeviceName": "/dev/xvda",
                "Ebs": {"VolumeSize": 8, "VolumeType": "gp3", "Encrypted": True, "KmsKeyId": "alias/baker"},
            }
        ],
    )["Instances"][0]["InstanceId"]
    baked = ec2.create_image(InstanceId=instance, Name="encrypted-bake")["ImageId"]
    copied = local_cloud.client("ec2", "eu-west-1").copy_image(
        SourceImageId=baked,
        SourceRegion="us-east-1",
        Name="encrypted-copy",
        Encrypted=True,
        KmsKeyId="alias/eu",
    )["ImageId"]

    for region, image_id, key in [("us-east-1", baked, "alias/baker"), ("eu-west-1", copied, "alias/eu")]:
        client = local_cloud.client("ec2", region)
        image = client.describe_images(ImageIds=[image_id])["Images"][0]
        assert (image["RootDeviceType"], image["RootDeviceName"]) == ("ebs", "/dev/xvda")
        root = image["BlockDeviceMappings"][0]["Ebs"]
        assert (root["VolumeSize"], root["VolumeType"], root["Encrypted"]) == (8, "gp3", True)
        snapshot = client.describe_snapshots(SnapshotIds=[root["SnapshotId"]])["Snapshots"][0]
        assert snapshot["Encrypted"] and snapshot["KmsKeyId"] == key


def test_accounts_are_separate_and_a_shared_image_can_be_copied(local_cloud: Any) -> None:
    """Promotion between accounts: the image is invisible until shared, then the target copies it."""
    dev = local_cloud.client("ec2", account_id="111122223333")
    prod = local_cloud.client("ec2", account_id="444455556666")
    source = source_ami(dev)["ImageId"]
    instance = dev.run_instances(ImageId=source, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ami = dev.create_image(InstanceId=instance, Name="promote-me")["ImageId"]

    assert [i["ImageId"] for i in dev.describe_images(Owners=["self"])["Images"]] == [ami]
    assert prod.describe_images(Owners=["self"])["Images"] == []
    with pytest.raises(botocore.exceptions.ClientError):
        prod.describe_images(ImageIds=[ami])

    dev.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": "444455556666"}]})
    assert ami in [i["ImageId"] for i in prod.describe_images(ExecutableUsers=["self"])["Images"]]
    copy = prod.copy_image(SourceImageId=ami, SourceRegion="us-east-1", Name="promoted")["ImageId"]

    image = prod.describe_images(ImageIds=[copy])["Images"][0]
    assert image["OwnerId"] == "444455556666"
    assert [i["ImageId"] for i in prod.describe_images(Owners=["self"])["Images"]] == [copy]
    sts = local_cloud.client("sts", account_id="444455556666")
    assert sts.get_caller_identity()["Account"] == "444455556666"


def test_an_image_is_deprecated_disabled_protected_and_referenced_as_on_aws(local_cloud: Any) -> None:
    """Gaps 16 and 17: deprecation, a disabled image that cannot launch, deregistration protection,
    LastLaunchedTime, and DescribeImageReferences naming the instance and the launch template."""
    owner = local_cloud.client("ec2", "eu-central-1", "111122223333")
    other = local_cloud.client("ec2", "eu-central-1", "444455556666")
    ami = owner.register_image(
        Name=f"lifecycle-{time.time_ns()}",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
    )["ImageId"]
    owner.modify_image_attribute(ImageId=ami, LaunchPermission={"Add": [{"UserId": "444455556666"}]})

    def image(ec2: Any = owner, **kwargs: Any) -> dict[str, Any] | None:
        found = ec2.describe_images(ImageIds=[ami], **kwargs)["Images"]
        return found[0] if found else None

    assert (image() or {}).get("DeregistrationProtection") == "disabled" and "LastLaunchedTime" not in image()
    owner.enable_image_deprecation(ImageId=ami, DeprecateAt="2020-01-01T00:00:29Z")
    assert (image() or {})["DeprecationTime"] == "2020-01-01T00:00:00.000Z", "rounded to the minute"
    assert image(other) is None and image(other, IncludeDeprecated=True), "others see it only when asking"
    owner.disable_image_deprecation(ImageId=ami)
    assert "DeprecationTime" not in (image() or {}) and image(other)

    instance = owner.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    assert (image() or {})["LastLaunchedTime"].endswith("Z")
    template = owner.create_launch_template(
        LaunchTemplateName=f"uses-{ami}", LaunchTemplateData={"ImageId": ami}
    )["LaunchTemplate"]["LaunchTemplateId"]
    refs = owner.describe_image_references(ImageIds=[ami], IncludeAllResourceTypes=True)["ImageReferences"]
    assert sorted((r["ResourceType"], r["Arn"].rsplit("/", 1)[-1]) for r in refs) == [
        ("ec2:Instance", instance),
        ("ec2:LaunchTemplate", template),
    ]

    owner.enable_image_deregistration_protection(ImageId=ami)
    assert (image() or {})["DeregistrationProtection"] == "enabled"
    with pytest.raises(botocore.exceptions.ClientError) as protected:
        owner.deregister_image(ImageId=ami)
    assert protected.value.response["Error"]["Code"] == "OperationNotPermitted"

    owner.disable_image(ImageId=ami)
    assert image() is None and (image(IncludeDisabled=True) or {})["State"] == "disabled"
    with pytest.raises(botocore.exceptions.ClientError) as disabled:
        owner.run_instances(ImageId=ami, MinCount=1, MaxCount=1)
    assert disabled.value.response["Error"]["Code"] == "InvalidAMIID.Unavailable"
    owner.enable_image(ImageId=ami)
    owner.terminate_instances(InstanceIds=[instance])
    owner.disable_image_deregistration_protection(ImageId=ami)
    owner.deregister_image(ImageId=ami)
    assert owner.describe_images(Filters=[{"Name": "image-id", "Values": [ami]}])["Images"] == []


def test_the_local_certificate_serves_https_listeners_and_a_redirect_answers_301(local_cloud: Any) -> None:
    """Gap 18: the local cloud's own ACM certificate at its fixed ARN, trusted through the chain
    GetCertificate gives; an HTTPS listener terminates TLS with it (503: no target yet, as an ALB
    answers), a redirect listener answers 301 to it."""
    import http.client
    import ssl

    from baker.local.moto import certificates

    arn = certificates.local_arn("us-east-1", "123456789012")
    acm, ec2, elb = local_cloud.client("acm"), local_cloud.client("ec2"), local_cloud.client("elbv2")
    held = acm.get_certificate(CertificateArn=arn)
    assert "BEGIN CERTIFICATE" in held["Certificate"] and "BEGIN CERTIFICATE" in held["CertificateChain"]
    assert acm.describe_certificate(CertificateArn=arn)["Certificate"]["DomainName"] == "*.elb.amazonaws.com"
    with pytest.raises(botocore.exceptions.ClientError):
        acm.get_certificate(CertificateArn=certificates.local_arn("us-east-1", "999999999999"))
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    tg = elb.create_target_group(Name="tls-tg", Protocol="HTTP", Port=8080, VpcId=vpc)["TargetGroups"][0]
    lb = elb.create_load_balancer(Name="tls-lb", Subnets=subnets, Type="application")["LoadBalancers"][0]
    try:
        https = elb.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTPS", Port=443,
            SslPolicy="ELBSecurityPolicy-TLS13-1-2-2021-06", Certificates=[{"CertificateArn": arn}],
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
        )["Listeners"][0]["ListenerArn"]  # fmt: skip
        plain = elb.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
            DefaultActions=[{"Type": "redirect", "RedirectConfig": {
                "Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}],
        )["Listeners"][0]["ListenerArn"]  # fmt: skip

        def urls() -> dict[str, str] | None:
            found = {b["listener_arn"]: b["url"] for b in local_cloud.status()["load_balancers"]}
            return found if https in found and plain in found else None

        found = wait_for("both listeners on loopback", urls, 15)
        assert found[https].startswith("https://127.0.0.1:") and found[plain].startswith("http://127.0.0.1:")
        trust = ssl.create_default_context(cadata=held["CertificateChain"])
        port = int(found[https].rsplit(":", 1)[1])
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=trust)
        conn.request("GET", "/version")
        assert conn.getresponse().status == 503, "TLS accepted; no healthy target behind it"
        conn.close()
        conn2 = http.client.HTTPConnection("127.0.0.1", int(found[plain].rsplit(":", 1)[1]), timeout=10)
        conn2.request("GET", "/version?x=1", headers={"Host": "127.0.0.1"})
        moved = conn2.getresponse()
        assert moved.status == 301
        assert moved.getheader("Location") == found[https].replace(":443", "") + "/version?x=1"
        conn2.close()
    finally:
        elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
        elb.delete_target_group(TargetGroupArn=tg["TargetGroupArn"])


# ---- EBS direct APIs on real blocks (baker.local.moto.ebs_direct) ----------------------------------

BLOCK = 524288


def put_block(ebs: Any, snapshot: str, index: int, data: bytes, checksum: str | None = None) -> Any:
    return ebs.put_snapshot_block(
        SnapshotId=snapshot,
        BlockIndex=index,
        BlockData=data,
        DataLength=len(data),
        Checksum=checksum or base64.b64encode(hashlib.sha256(data).digest()).decode(),
        ChecksumAlgorithm="SHA256",
    )


def read_block(ebs: Any, snapshot: str, index: int) -> bytes:
    listed = ebs.list_snapshot_blocks(SnapshotId=snapshot)["Blocks"]
    token = next(b["BlockToken"] for b in listed if b["BlockIndex"] == index)
    got = ebs.get_snapshot_block(SnapshotId=snapshot, BlockIndex=index, BlockToken=token)
    return bytes(got["BlockData"].read())


def test_a_child_snapshot_reads_its_parents_blocks_plus_its_own(local_cloud: Any) -> None:
    ebs, ec2 = local_cloud.client("ebs"), local_cloud.client("ec2")
    state = lambda snap: ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["State"]  # noqa: E731
    parent = ebs.start_snapshot(VolumeSize=1, Tags=[{"Key": "layer", "Value": "base"}])
    assert parent["BlockSize"] == BLOCK and parent["Status"] == "pending"
    base = parent["SnapshotId"]
    put_block(ebs, base, 0, b"base-0".ljust(BLOCK, b"\0"))
    put_block(ebs, base, 5, b"base-5".ljust(BLOCK, b"\0"))
    assert state(base) == "pending"
    with pytest.raises(botocore.exceptions.ClientError, match="ChangedBlocksCount"):
        ebs.complete_snapshot(SnapshotId=base, ChangedBlocksCount=3)
    assert ebs.complete_snapshot(SnapshotId=base, ChangedBlocksCount=2)["Status"] == "completed"
    assert state(base) == "completed"
    with pytest.raises(botocore.exceptions.ClientError, match="ValidationException"):
        put_block(ebs, base, 1, b"late".ljust(BLOCK, b"\0"))  # a completed snapshot takes no blocks

    app = ebs.start_snapshot(VolumeSize=1, ParentSnapshotId=base, Description="app layer")["SnapshotId"]
    put_block(ebs, app, 5, b"app-5".ljust(BLOCK, b"\0"))
    put_block(ebs, app, 7, b"app-7".ljust(BLOCK, b"\0"))
    other = base64.b64encode(hashlib.sha256(b"other data").digest()).decode()
    with pytest.raises(botocore.exceptions.ClientError, match="checksum") as refused:  # as AWS refuses it
        put_block(ebs, app, 8, b"app-8".ljust(BLOCK, b"\0"), checksum=other)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    ebs.complete_snapshot(SnapshotId=app, ChangedBlocksCount=2)

    assert [b["BlockIndex"] for b in ebs.list_snapshot_blocks(SnapshotId=app)["Blocks"]] == [0, 5, 7]
    assert read_block(ebs, app, 0).startswith(b"base-0")  # the parent's block
    assert read_block(ebs, app, 5).startswith(b"app-5")  # its own
    assert read_block(ebs, base, 5).startswith(b"base-5")  # the parent is untouched
    changed = ebs.list_changed_blocks(FirstSnapshotId=base, SecondSnapshotId=app)["ChangedBlocks"]
    assert [(c["BlockIndex"], "FirstBlockToken" in c) for c in changed] == [(5, True), (7, False)]

    store = local_cloud.state_dir / "snapshots"
    assert (store / f"{app}.img").is_file()
    ec2.delete_snapshot(SnapshotId=app)
    assert not (store / f"{app}.img").exists()  # DeleteSnapshot frees the blocks
    assert read_block(ebs, base, 0).startswith(b"base-0")
    ec2.delete_snapshot(SnapshotId=base)
    assert not (store / f"{base}.img").exists()


@pytest.fixture
def deploy_role_without(local_cloud: Any, tmp_path: Any) -> Iterator[str]:
    """The session's cloud enforcing the example roles (``local up --enforce-iam``), with one action
    taken out of examples/iam/deploy.json; enforcement off again afterwards."""
    from baker.config import load_project
    from baker.local import cloud

    missing = "dynamodb:GetItem"
    policies = tmp_path / "iam"
    shutil.copytree(REPO / "examples" / "iam", policies)
    doc = json.loads((policies / "deploy.json").read_text())
    for st in doc["Statement"]:
        if isinstance(st["Action"], list) and missing in st["Action"]:
            st["Action"].remove(missing)
    (policies / "deploy.json").write_text(json.dumps(doc))
    repo = load_project(REPO)
    envs = [repo.environment(n) for n in repo.environment_names()]
    cloud.up(local_cloud.state_dir, rootfs=False, iam=cloud.IAMSetup(True, policies, envs))
    try:
        yield missing
    finally:
        cloud.up(local_cloud.state_dir, rootfs=False, iam=cloud.IAMSetup(False))


def test_a_role_missing_one_action_fails_the_release_naming_it(
    local_cloud: Any, deploy_role_without: str, tmp_path: Any
) -> None:
    from baker.local import cloud

    (tmp_path / "project").mkdir()
    project = copy_project(tmp_path / "project", "environments")
    argv = [sys.executable, "-m", "baker", "--project", str(project), "--output", "json", "--local"]
    done = subprocess.run([*argv, "release", "-e", "dev"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr
    error = json.loads(done.stdout)["error"]
    assert f"not authorized to perform: {deploy_role_without}" in error, error
    assert "assumed-role/baker-deploy/" in error and "table/baker-state" in error, error
    calls = cloud.iam_calls(local_cloud.state_dir)["calls"]
    assert [c["action"] for c in calls if not c["allowed"]] == [deploy_role_without]
    assert not any(c["action"].startswith("ec2:") for c in calls), "refused before anything was baked"
