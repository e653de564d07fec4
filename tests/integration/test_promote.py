"""promote against the local cloud, without a fleet (--no-deploy): the gates, and the copies and
shares each account and region needs. Source releases are written to the ledger directly and the
AMIs registered in the emulator: promote never bakes, so they need no Packer run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from baker import provenance
from baker.cli import main
from baker.config import load_project
from baker.errors import Refused
from baker.ledger import Ledger
from baker.promote import Promote
from tests.conftest import copy_project
from tests.localcloud import register_ami

pytestmark = pytest.mark.integration

DEV_ACCOUNT, PROD_ACCOUNT = "123456789012", "210987654321"


@pytest.fixture(scope="module")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_project(tmp_path_factory.mktemp("promote-project"), "environments")
    envs = root / "environments"
    # west: the same account as dev in another region, with a copy in a third region
    (envs / "west.yml").write_text(
        yaml.safe_dump(
            {
                "aws": {"region": "us-west-2"},
                "bake": {"copy_to_regions": ["eu-west-1"]},
                "promote_from": "dev",
            }
        )
    )
    # soak: promotions from dev only after an hour of health there
    (envs / "soak.yml").write_text(yaml.safe_dump({"promote_from": "dev", "promotion": {"min_soak": "1h"}}))
    # odd: different image settings
    (envs / "odd.yml").write_text(yaml.safe_dump({"bake": {"volume_size": 16}}))
    return root


class World:
    def __init__(self, cloud: Any, root: Path) -> None:
        self.cloud = cloud
        self.project = load_project(root)

    def aws(self, env: str) -> Any:
        s = self.project.environment(env).settings.aws
        return self.cloud.aws(s.region, s.account_id)

    def healthy_ami(self, env: str, *, verified: bool = False, encrypted: bool = False) -> str:
        """An AMI of the app, live and healthy in ``env`` according to its ledger."""
        aws = self.aws(env)
        ebs: dict[str, Any] = {}
        if encrypted:
            key = aws.client("kms").create_key(Description="the source account's image key")["KeyMetadata"]
            ebs.update(Encrypted=True, KmsKeyId=key["Arn"])
        tags = {provenance.RECIPE: "r" * 64}
        if verified:
            tags[provenance.VERIFIED] = provenance.verified_value(provenance.utc_now(), "0" * 16)
        app = self.project.app.name
        ami = register_ami(aws, "1.2.3", app=app, ebs=ebs, **tags)
        self.record(env, ami)
        return ami

    def record(self, env: str, ami: str) -> None:
        """A healthy release of ``ami`` in ``env``'s ledger, as a deploy writes it."""
        ledger = Ledger(self.aws(env), table="baker-state", app=self.project.app.name, env=env)
        release = ledger.new("deploy", ami, version="1.2.3")
        release.outcome, release.healthy_at = "healthy", provenance.iso(provenance.utc_now())
        ledger.write(release)

    def promote(self, source: str, target: str, **kwargs: Any) -> dict[str, Any]:
        stage = Promote(
            self.project,
            self.project.environment(source),
            self.project.environment(target),
            self.aws(source),
            self.aws(target),
            local=True,
        )
        return stage.run(deploy=False, **kwargs)

    def tags(self, env: str, ami: str, region: str | None = None) -> dict[str, str]:
        s = self.project.environment(env).settings.aws
        ec2 = self.cloud.client("ec2", region or s.region, s.account_id)
        image = ec2.describe_images(ImageIds=[ami])["Images"][0]
        return {t["Key"]: t["Value"] for t in image.get("Tags", [])}


@pytest.fixture(scope="module")
def world(local_cloud: Any, project_root: Path) -> World:
    return World(local_cloud, project_root)


def test_same_account_and_region_is_the_very_same_ami(world: World):
    ami = world.healthy_ami("dev")
    result = world.promote("dev", "staging")
    assert (result["ami_id"], result["copies"], result["outcome"]) == (ami, {"us-east-1": ami}, "copied")


def test_another_region_gets_tagged_copies_made_concurrently_and_only_once(world: World):
    ami = world.healthy_ami("dev")
    result = world.promote("dev", "west")
    copies = result["copies"]
    assert set(copies) == {"us-west-2", "eu-west-1"} and ami not in copies.values()
    assert sorted(result["copied"]) == ["eu-west-1", "us-west-2"]
    for region, copy in copies.items():
        tags = world.tags("west", copy, region)
        assert tags[provenance.PROMOTED_FROM] == f"{ami} us-east-1 dev"
        assert (tags[provenance.APP], tags[provenance.VERSION]) == ("hello-web", "1.2.3")
    assert "west:us-west-2:" in world.tags("dev", ami)[provenance.PROMOTED_TO]
    again = world.promote("dev", "west")
    assert again["copies"] == copies and again["copied"] == [], "idempotent: the copies are found"


def test_another_account_is_shared_then_copied_and_re_encrypted_with_the_targets_key(world: World):
    """prod (another account, another region) takes from staging: share, copy, own key, own tags."""
    ami = world.healthy_ami("staging", verified=True, encrypted=True)
    prod_key = world.aws("prod").client("kms").create_key(Description="prod's image key")["KeyMetadata"]
    env_file = world.project.root / "environments/prod.yml"
    saved = env_file.read_text()
    data = yaml.safe_load(saved)
    data["bake"] = {"kms_key_id": prod_key["Arn"]}  # where the copy is encrypted: not an image setting
    env_file.write_text(yaml.safe_dump(data))
    try:
        world.project = load_project(world.project.root)
        result = world.promote("staging", "prod")
    finally:
        env_file.write_text(saved)
        world.project = load_project(world.project.root)
    copy = result["copies"]["us-west-2"]
    assert result["shared_with"] == [PROD_ACCOUNT] and result["ami_id"] == copy != ami
    source = world.cloud.client("ec2").describe_images(ImageIds=[ami])["Images"][0]
    assert {"UserId": PROD_ACCOUNT} in world.cloud.client("ec2").describe_image_attribute(
        ImageId=ami, Attribute="launchPermission"
    )["LaunchPermissions"]
    snap = source["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    perms = world.cloud.client("ec2").describe_snapshot_attribute(
        SnapshotId=snap, Attribute="createVolumePermission"
    )["CreateVolumePermissions"]
    assert {"UserId": PROD_ACCOUNT} in perms
    prod_ec2 = world.cloud.client("ec2", "us-west-2", PROD_ACCOUNT)
    image = prod_ec2.describe_images(ImageIds=[copy])["Images"][0]
    assert image["OwnerId"] == PROD_ACCOUNT, "prod owns its copy"
    ebs = image["BlockDeviceMappings"][0]["Ebs"]
    assert (ebs["Encrypted"], ebs["KmsKeyId"]) == (True, prod_key["Arn"])
    tags = world.tags("prod", copy)
    assert tags[provenance.PROMOTED_FROM] == f"{ami} us-east-1 staging"
    assert provenance.parse_verified(tags[provenance.VERIFIED]) is not None, "tags are set on the copy"


def test_the_gates_refuse_with_the_rule_file_and_key(world: World):
    world.healthy_ami("dev")
    with pytest.raises(Refused) as wrong_source:
        world.promote("dev", "prod")  # prod takes only from staging
    assert wrong_source.value.details["rule"] == "promote_from"
    assert wrong_source.value.details["file"].endswith("environments/prod.yml")
    assert "baker promote --from staging --to prod" in wrong_source.value.message

    with pytest.raises(Refused) as soak:
        world.promote("dev", "soak")
    assert soak.value.details["rule"] == "min_soak" and "promotion.min_soak" in soak.value.message

    with pytest.raises(Refused) as odd:
        world.promote("dev", "odd")
    assert odd.value.details["rule"] == "image_settings"
    assert odd.value.details["keys"] == ["bake.volume_size"]

    with pytest.raises(Refused) as never:
        world.promote("dev", "staging", ami_id="ami-0123456789abcdef0")
    assert never.value.details["rule"] == "promotion_source"


def test_a_pinned_target_refuses_the_promotion(world: World):
    world.healthy_ami("dev")
    staging = Ledger(world.aws("staging"), table="baker-state", app="hello-web", env="staging")
    staging.set_pin("ami-0123456789abcdef0", reason="incident 9", by="oncall")
    try:
        with pytest.raises(Refused) as info:
            world.promote("dev", "staging")
    finally:
        staging.clear_pin()
    assert info.value.details["rule"] == "pinned" and "baker unpin -e staging" in info.value.message


@pytest.fixture(scope="module")
def revoke_world(local_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The example's dev, staging and prod (prod in another account and region) for an app of its
    own, so its ledgers and revoked AMIs meet no other test's."""
    root = copy_project(tmp_path_factory.mktemp("revoke-project"), "environments", "terraform")
    settings = yaml.safe_load((root / "baker.yml").read_text())
    settings["app"]["name"] = "revoke-web"
    (root / "baker.yml").write_text(yaml.safe_dump(settings))
    return World(local_cloud, root)


def cli(world: World, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict[str, Any], str]:
    """``baker --local --output json ARGS`` in this process: exit code, its JSON, its stderr."""
    code = main(["--project", str(world.project.root), "--local", "--output", "json", *args])
    said = capsys.readouterr()
    return code, json.loads(said.out.strip().splitlines()[-1]), said.err


def test_a_revoked_ami_and_its_promoted_copy_are_refused_everywhere_and_status_alarms(
    revoke_world: World, capsys: pytest.CaptureFixture
):
    """Issue 21's check: dev's live AMI promoted to staging and on to prod (another account and
    region: a copy), then revoked: prod's copy is revoked too; promote, deploy and rollback --to of
    either exit 6 naming the reason; status --fail-on revoked names all three environments."""
    world = revoke_world
    ami = world.healthy_ami("dev", verified=True)
    assert world.promote("dev", "staging")["ami_id"] == ami
    world.record("staging", ami)
    copy = world.promote("staging", "prod")["copies"]["us-west-2"]
    world.record("prod", copy)
    # an app image baked on it as its base (layered images): revoked with it
    child = register_ami(world.aws("dev"), "1.2.4", app="revoke-web", **{provenance.BASE_AMI: ami})

    code, planned, err = cli(world, capsys, "revoke", "--ami", ami, "--reason", "CVE-2026-0001", "--dry-run")
    assert code == 0, err
    assert {m["ami_id"] for m in planned["revoked"]} == {ami, copy, child}
    assert provenance.REVOKED not in world.tags("prod", copy), "a dry run marks nothing"

    code, done, err = cli(world, capsys, "revoke", "--ami", ami, "--reason", "CVE-2026-0001")
    assert code == 0, err
    marked = {(m["ami_id"], m["account_id"]) for m in done["revoked"]}
    assert marked == {(ami, DEV_ACCOUNT), (copy, PROD_ACCOUNT), (child, DEV_ACCOUNT)}
    said = provenance.parse_revoked(world.tags("prod", copy)[provenance.REVOKED])
    assert said is not None and (said["reason"], said["root"]) == ("CVE-2026-0001", ami)
    prod_ec2 = world.cloud.client("ec2", "us-west-2", PROD_ACCOUNT)
    (image,) = prod_ec2.describe_images(ImageIds=[copy])["Images"]
    snap = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    snap_tags = prod_ec2.describe_snapshots(SnapshotIds=[snap])["Snapshots"][0]["Tags"]
    assert provenance.REVOKED in {t["Key"] for t in snap_tags}, "its snapshots too"

    assert set(done["ledgers"]) >= {"dev", "staging", "prod"}
    refusals = {
        "promote staging -> prod": ("promote", "--from", "staging", "--to", "prod", "--no-deploy"),
        "promote dev -> staging": ("promote", "--from", "dev", "--to", "staging", "--no-deploy"),
        "deploy dev": ("deploy", "-e", "dev", "--ami", ami),
        "deploy staging": ("deploy", "-e", "staging", "--ami", ami),
        "rollback --to in prod": ("rollback", "-e", "prod", "--to", copy),
        "rollback --to in dev": ("rollback", "-e", "dev", "--to", ami),
    }
    for what, args in refusals.items():
        code, refused, err = cli(world, capsys, *args)
        assert (code, refused.get("rule")) == (6, "revoked"), f"{what}: {err}"
        assert "CVE-2026-0001" in refused["error"] and f"baker unrevoke --ami {ami}" in refused["error"], what

    three = ("-e", "dev", "-e", "staging", "-e", "prod")
    code, alarm, err = cli(world, capsys, "status", *three, "--fail-on", "revoked")
    assert code == 6 and alarm["revoked_envs"] == ["dev", "staging", "prod"], err
    for env in ("dev", "staging", "prod"):
        assert f"{env} runs " in alarm["error"]
    history = Ledger(world.aws("prod"), table="baker-state", app="revoke-web", env="prod").releases(limit=1)
    assert (history[0].kind, history[0].reason, set(history[0].revoked_amis or [])) == (
        "revoke",
        "CVE-2026-0001",
        {ami, copy, child},
    )

    code, lifted, err = cli(world, capsys, "unrevoke", "--ami", ami)
    assert code == 0 and {u["ami_id"] for u in lifted["unrevoked"]} == {ami, copy, child}, err
    assert provenance.REVOKED not in world.tags("prod", copy)
    code, calm, err = cli(world, capsys, "status", *three, "--fail-on", "revoked")
    assert code == 0 and all(e["revoked"] == [] for e in calm["environments"]), err
