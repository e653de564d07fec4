"""Deploy against the local cloud with the real Terraform and AWS provider.

The fleet (launch template, ASG, ALB, target group, listener, security groups) is created once
for the module, by its first deploy (``first``: about 65 s of it is the provider's fixed pauses on
the load balancer); the tests roll that fleet forward, back, and try to break it. Each test
requests the state it starts from (``healthy``, ``hostile_runtime``, ``staging_first_failure``,
``interrupted``...): a fixture that finds that state already there, or builds it. Run in file
order they find it (each builds nothing the test before did not); run alone or in any order, each
builds what it needs. AMIs are registered directly in the emulator: they need not be baked to be
deployed.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from baker import envfile
from baker.cli import main
from baker.config import load_project
from baker.deploy import Deploy, Options
from baker.errors import Interrupted, Refused, RollbackFailed, RolledBack
from baker.ledger import Ledger, Lock, Release, lock_for
from baker.pin import Pin
from baker.promote import Promote
from tests.conftest import copy_project, need_tools
from tests.harness import FakeTime, cli, wait_for
from tests.localcloud import register_ami

pytestmark = pytest.mark.integration

REGION = "us-east-1"
ENV = "dev"


class Fleet:
    """The shared deploy environment: a project copy, the cloud, and ways to look at the fleet."""

    def __init__(self, cloud: Any, root: Path) -> None:
        self.cloud = cloud
        self.root = root
        self.project = load_project(root)
        self.aws = cloud.aws(REGION)
        self.ledger = Ledger(self.aws, table="baker-state", app="hello-web", env=ENV)
        self._n = 0

    def ami(self, version: str) -> str:
        return register_ami(self.aws, version)

    def variant(self, dest: Path, edit: Callable[[dict[str, Any]], None]) -> Any:
        """The same project and Terraform state with ``edit`` applied to environments/dev.yml."""
        shutil.copytree(self.root, dest, ignore=shutil.ignore_patterns(".baker"))
        env_file = dest / "environments" / f"{ENV}.yml"
        data = yaml.safe_load(env_file.read_text())
        edit(data)
        env_file.write_text(yaml.safe_dump(data))
        return load_project(dest)

    def deploy(self, project: Any = None) -> Deploy:
        project = project or self.project
        return Deploy(project, project.environment(ENV), self.aws, local=True, poll_min=0.5, poll_max=2)

    def live(self) -> dict[str, dict[str, str]]:
        """instance id -> {ami, health} of the group's in-service instances, as AWS says."""
        asg = self.aws.client("autoscaling")
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["hello-web-dev"])[
            "AutoScalingGroups"
        ][0]
        ids = [i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"]
        tg = self.aws.client("elbv2").describe_target_groups(Names=["hello-web-dev-tg"])["TargetGroups"][0]
        health = {
            t["Target"]["Id"]: t["TargetHealth"]["State"]
            for t in self.aws.client("elbv2").describe_target_health(TargetGroupArn=tg["TargetGroupArn"])[
                "TargetHealthDescriptions"
            ]
        }
        images = {}
        for res in self.aws.client("ec2").describe_instances(InstanceIds=ids)["Reservations"]:
            for inst in res["Instances"]:
                images[inst["InstanceId"]] = inst["ImageId"]
        return {i: {"ami": images[i], "health": health.get(i, "unregistered")} for i in ids}

    def lock_holder(self) -> dict | None:
        state = self.project.settings.state
        return lock_for(self.aws, table=state.table, app="hello-web", env=ENV, lease_seconds=60).holder()

    def settled(self) -> Release | None:
        """The live release, when the fleet runs it and nothing else, every target healthy, with
        no deploy lock held and no pin: the state most tests start from (None when it is not)."""
        live = self.ledger.live()
        if live is None or self.lock_holder() is not None or self.ledger.pin() is not None:
            return None
        now = self.live().values()
        if (
            len(now) != 2
            or {v["ami"] for v in now} != {live.ami_id}
            or {v["health"] for v in now} != {"healthy"}
        ):
            return None
        return live

    def settle(self) -> Release:
        """The live release after a healthy deploy of a new good AMI (dev.yml's runtime)."""
        self._n += 1
        result = self.deploy().run(self.ami(f"1.9.{self._n}"), options=Options(timeout=120))
        assert result["outcome"] == "healthy", result
        live = self.settled()
        assert live is not None, f"a healthy deploy left {self.live()}"
        return live


@pytest.fixture(scope="module")
def fleet(local_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    need_tools("terraform")
    return Fleet(
        local_cloud, copy_project(tmp_path_factory.mktemp("deploy-project"), "environments", "terraform")
    )


@pytest.fixture(scope="module")
def first(fleet: Fleet) -> dict[str, Any]:
    """dev's first deploy (it creates the fleet), and what AWS and the ledger said right after.
    Every test that deploys to dev requests it (itself or through ``healthy``): it is the first."""
    result = fleet.deploy().run(fleet.ami("1.0.0"), options=Options(timeout=120))
    return {
        "result": result,
        "live": fleet.live(),
        "releases": fleet.ledger.releases(),
        "lock": fleet.lock_holder(),
    }


@pytest.fixture
def healthy(fleet: Fleet, first: dict[str, Any]) -> Release:
    """dev's live release, running on every instance and healthy (``Fleet.settled``): as the test
    before left it, or a new good AMI deployed when it left something else."""
    return fleet.settled() or fleet.settle()


@pytest.fixture
def dev_runtime(fleet: Fleet, healthy: Release) -> Release:
    """``healthy``, on dev.yml's own runtime: a test that rolled out another runtime is undone."""
    if healthy.runtime != HOSTILE_RUNTIME:
        return healthy
    fleet.deploy().run(healthy.ami_id, options=Options(timeout=120))
    live = fleet.settled()
    assert live is not None and live.runtime != HOSTILE_RUNTIME
    return live


@pytest.fixture
def hostile_runtime(fleet: Fleet, healthy: Release, tmp_path: Path) -> Release:
    """``healthy``, running ``HOSTILE_RUNTIME``: as the runtime test leaves it, or rolled out now."""
    if healthy.runtime == HOSTILE_RUNTIME:
        return healthy
    roll_out_hostile_runtime(fleet, tmp_path)
    live = fleet.settled()
    assert live is not None and live.runtime == HOSTILE_RUNTIME
    return live


@pytest.fixture(scope="module")
def staging_first_failure(fleet: Fleet) -> dict[str, Any]:
    """staging's first deploy (its own state and fleet), of a broken AMI, and its ledger right
    after. Every test that deploys to staging requests it: it is the first."""
    bad = fleet.ami("0.9.0-broken")
    fleet.cloud.set_health(bad, "unhealthy")
    project = fleet.project
    stage = Deploy(project, project.environment("staging"), fleet.aws, local=True, poll_min=0.5, poll_max=2)
    try:
        stage.run(bad, options=Options(timeout=10))
    except RollbackFailed as failed:
        staging = Ledger(fleet.aws, table="baker-state", app="hello-web", env="staging")
        return {"ami": bad, "error": failed, "releases": staging.releases(), "live": staging.live()}
    pytest.fail(f"staging's first deploy of {bad}, an AMI never healthy, did not fail")


@pytest.fixture
def interrupted(fleet: Fleet, first: dict[str, Any]) -> Release:
    """dev's newest release is one a Ctrl-C ended during the wait: as the test of that leaves it,
    or interrupted now."""
    newest = fleet.ledger.releases(limit=1)[0]
    if newest.outcome != "interrupted":
        interrupt_a_deploy(fleet, "5.0.2")
        newest = fleet.ledger.releases(limit=1)[0]
    assert newest.outcome == "interrupted"
    return newest


def roll_out_hostile_runtime(fleet: Fleet, tmp_path: Path) -> dict[str, Any]:
    """Deploy the live AMI again with ``HOSTILE_RUNTIME`` as dev's runtime."""
    live = fleet.ledger.live()
    assert live is not None
    project = fleet.variant(tmp_path / "runtime", lambda data: data.update(runtime={"env": HOSTILE_RUNTIME}))
    return fleet.deploy(project).run(live.ami_id, options=Options(timeout=120))


def interrupt_a_deploy(fleet: Fleet, version: str) -> tuple[str, Interrupted]:
    """Deploy a new AMI that never gets healthy and Ctrl-C it once the wait has polled."""
    ami = fleet.ami(version)
    fleet.cloud.set_health(ami, "initial")  # never healthy: the deploy waits until interrupted
    stage = fleet.deploy()
    polls = threading.Event()
    stage.on_poll = lambda state: polls.set()

    def interrupt() -> None:
        if polls.wait(timeout=240):
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(Interrupted) as info:
        stage.run(ami, options=Options(timeout=300))
    return ami, info.value


def test_first_deploy_creates_a_healthy_fleet_and_records_it(first: dict[str, Any]):
    result, live, releases = first["result"], first["live"], first["releases"]
    assert result["outcome"] == "healthy"
    assert result["previous_ami_id"] is None
    assert result["version"] == "1.0.0"
    assert len(live) == 2
    assert {v["ami"] for v in live.values()} == {result["ami_id"]}
    assert {v["health"] for v in live.values()} == {"healthy"}
    assert releases[0].ami_id == result["ami_id"]
    assert releases[0].outcome == "healthy"
    assert releases[0].git_sha == "sha-1.0.0"
    assert releases[0].by
    assert first["lock"] is None


def test_a_new_ami_replaces_every_instance(fleet: Fleet, healthy: Release):
    before = set(fleet.live())
    ami = fleet.ami("1.1.0")
    result = fleet.deploy().run(ami, options=Options(timeout=120))
    assert result["outcome"] == "healthy"
    assert result["previous_ami_id"] == healthy.ami_id
    live = fleet.live()
    assert len(live) == 2
    assert not set(live) & before, "every instance is a new one"
    assert {v["ami"] for v in live.values()} == {ami}
    assert {v["health"] for v in live.values()} == {"healthy"}
    newest = fleet.ledger.releases()[0]
    assert (newest.ami_id, newest.outcome, newest.previous_ami_id) == (
        ami,
        "healthy",
        healthy.ami_id,
    )
    # the release names the fleet it changed
    assert newest.asg_name == "hello-web-dev" and newest.launch_template_id
    assert int(newest.launch_template_version) >= 2


def test_an_unhealthy_ami_is_rolled_back_to_the_previous_good_one(
    fleet: Fleet, healthy: Release, tmp_path: Path
):
    good = healthy.ami_id
    bad = fleet.ami("2.0.0-broken")
    fleet.cloud.set_health(bad, "unhealthy")
    # baker sees the broken AMI itself: the refresh would go on for 10 minutes and the deadline
    # is 2, but no target of the AMI gets healthy within deploy.unhealthy_timeout of a failed check
    project = fleet.variant(tmp_path / "quick", lambda data: data["deploy"].update(unhealthy_timeout=4))
    knobs = fleet.cloud.settings()
    fleet.cloud.settings(refresh_timeout=600)
    try:
        with pytest.raises(RolledBack) as info:
            fleet.deploy(project).run(bad, options=Options(timeout=120))
    finally:
        fleet.cloud.settings(refresh_timeout=knobs.get("refresh_timeout", 30))
    assert info.value.exit_code == 4
    assert "became healthy" in info.value.message and "deploy.unhealthy_timeout: 4s" in info.value.message
    assert info.value.details["outcome"] == "rolled_back"
    assert info.value.details["rollback"]["ami_id"] == good
    assert good in info.value.message
    live = fleet.live()
    assert {v["ami"] for v in live.values()} == {good}
    assert {v["health"] for v in live.values()} == {"healthy"}
    releases = fleet.ledger.releases()
    assert (releases[0].ami_id, releases[0].kind, releases[0].outcome) == (
        good,
        "rollback",
        "healthy",
    )
    assert (releases[1].ami_id, releases[1].outcome) == (bad, "rolled_back")
    assert fleet.ledger.live().ami_id == good
    assert fleet.lock_holder() is None


#: runtime values that must reach the app byte for byte (quotes, $, newlines, template syntax, unicode)
HOSTILE_RUNTIME = {
    "HELLO_GREETING": 'it\'s "quoted" $HOME ${var} %{if} `id` $(id)',
    "MULTI_LINE": "line one\n\tline two\\n",
    "UNICODE": "grüße 🎉",
}


#: source the file (sh -c's $0), print each named variable NUL-terminated
SHOW_VARIABLES = '. "$0"; for k in "$@"; do eval "printf \'%s\\0\' \\"\\$$k\\""; done'


def user_data(fleet: Fleet, template_id: str, version: str) -> dict[str, str]:
    """The runtime values the launch template version hands to cloud-init, read back through sh."""
    data = fleet.aws.client("ec2").describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=[version]
    )["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    cloud_config = base64.b64decode(data["UserData"]).decode()
    assert cloud_config.startswith("#cloud-config\n")
    files = yaml.safe_load(cloud_config)["write_files"]
    assert [f["path"] for f in files] == ["/etc/hello-web/runtime.env"]
    text = base64.b64decode(files[0]["content"]).decode()
    keys = [line.split("=", 1)[0] for line in text.splitlines() if line[:1].isalpha() and "=" in line]
    shown = subprocess.run(
        [
            "sh",
            "-c",
            '. "$0"; for k in "$@"; do eval "printf \'%s\\0\' \\"\\$$k\\""; done',
            "/dev/stdin",
            *keys,
        ],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = dict(zip(keys, shown.split("\0")[:-1], strict=True))
    assert envfile.parse(text) == values, "systemd's EnvironmentFile= reads what a shell reads"
    return values


def test_a_runtime_change_alone_rolls_the_same_ami_with_the_values_verbatim(
    fleet: Fleet, dev_runtime: Release, tmp_path: Path
):
    before = set(fleet.live())
    result = roll_out_hostile_runtime(fleet, tmp_path)
    assert result["outcome"] == "healthy"
    assert int(result["launch_template_version"]) > int(dev_runtime.launch_template_version)
    now = fleet.live()
    assert {v["ami"] for v in now.values()} == {dev_runtime.ami_id}
    assert not set(now) & before, "a runtime change is a rolling refresh: every instance is new"
    assert (
        user_data(fleet, result["launch_template_id"], result["launch_template_version"]) == HOSTILE_RUNTIME
    )
    assert fleet.ledger.live().runtime == HOSTILE_RUNTIME


def test_a_rollback_restores_the_ami_and_the_runtime_it_ran_with(
    fleet: Fleet, hostile_runtime: Release, tmp_path: Path
):
    good = hostile_runtime
    bad = fleet.ami("2.1.0-broken")
    fleet.cloud.set_health(bad, "unhealthy")
    # the broken release also changes the runtime (back to dev.yml's): the rollback must not keep it
    project = fleet.variant(tmp_path / "quick", lambda data: data["deploy"].update(unhealthy_timeout=4))
    with pytest.raises(RolledBack) as info:
        fleet.deploy(project).run(bad, options=Options(timeout=120))
    back = fleet.ledger.live()
    assert (back.kind, back.ami_id, back.runtime) == ("rollback", good.ami_id, HOSTILE_RUNTIME)
    assert info.value.details["rollback"]["runtime_restored"] is True
    assert user_data(fleet, back.launch_template_id, back.launch_template_version) == HOSTILE_RUNTIME


def test_a_protected_environment_refuses_a_direct_deploy_before_terraform_runs(
    fleet: Fleet, healthy: Release, capsys: pytest.CaptureFixture[str]
):
    prod = fleet.project.environment("prod")
    stage = Deploy(fleet.project, prod, fleet.cloud.aws("us-west-2", "210987654321"), local=True)
    code, out = cli(capsys, fleet.root, "deploy", "-e", "prod", "--ami", healthy.ami_id)
    assert (code, out["exit_code"]) == (6, 6)
    with pytest.raises(Refused) as info:
        stage.run(healthy.ami_id)
    details = info.value.details
    assert (details["rule"], details["key"], details["outcome"]) == ("protected", "protected", "refused")
    assert details["file"].endswith("environments/prod.yml")
    assert "environments/prod.yml: protected" in info.value.message
    assert "baker promote --from staging --to prod" in info.value.message
    assert not (fleet.root / ".baker/build/terraform/prod").exists(), "Terraform never ran"


def test_the_plan_gate_refuses_to_replace_the_fleet(fleet: Fleet, first: dict[str, Any], tmp_path: Path):
    # the same state, but a renamed service: Terraform would replace the ASG, ALB and target group
    renamed = fleet.variant(
        tmp_path / "renamed", lambda data: data["deploy"]["variables"].update(name="hello-web-renamed")
    )
    versions = len(fleet.ledger.releases())
    live_before = fleet.live()
    with pytest.raises(Refused) as info:
        fleet.deploy(renamed).run(fleet.ami("3.0.0"), options=Options(timeout=60))
    assert info.value.exit_code == 6
    assert "aws_autoscaling_group.this (replace)" in info.value.message
    assert "aws_lb.this (replace)" in info.value.message
    assert "--allow-replace" in info.value.message
    assert fleet.live() == live_before
    assert len(fleet.ledger.releases()) == versions, "a refused plan writes nothing to the ledger"
    assert fleet.lock_holder() is None


def test_a_dry_run_prints_the_plan_and_changes_nothing(fleet: Fleet, first: dict[str, Any]):
    live_before = fleet.live()
    versions = len(fleet.ledger.releases())
    result = fleet.deploy().run(fleet.ami("3.1.0"), dry_run=True)
    assert result["outcome"] == "planned"
    assert 'aws_launch_template.this["blue"]' in result["plan_text"]
    assert result["plan"]["counts"]["update"] == 2
    assert fleet.live() == live_before
    assert len(fleet.ledger.releases()) == versions


def test_deploy_dry_run_from_the_command_line(
    fleet: Fleet, first: dict[str, Any], capsys: pytest.CaptureFixture[str]
):
    ami = fleet.ami("3.2.0")
    code = main(["--project", str(fleet.root), "--local", "deploy", "-e", ENV, "--ami", ami, "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"dev: dry run, nothing changed; would deploy {ami}" in out
    assert "plan: 0 to create, 2 to update, 0 to replace, 0 to delete" in out
    assert 'update   aws_launch_template.this["blue"] (' in out and "image_id" in out


def test_a_second_deploy_while_one_runs_is_refused_with_exit_6(
    fleet: Fleet, healthy: Release, capsys: pytest.CaptureFixture[str]
):
    ami = fleet.ami("4.0.0")
    outcome: dict[str, Any] = {}

    def first_deploy() -> None:
        try:
            outcome["result"] = fleet.deploy().run(ami, options=Options(timeout=120))
        except Exception as exc:  # reported below
            outcome["error"] = exc

    runner = threading.Thread(target=first_deploy)
    runner.start()
    try:
        holder = wait_for("the first deploy to take the lock", fleet.lock_holder, deadline=30)
        code, out = cli(capsys, fleet.root, "deploy", "-e", ENV, "--ami", fleet.ami("4.0.1"))
    finally:
        runner.join(timeout=300)
    assert code == 6
    assert out["exit_code"] == 6
    assert holder["owner"] in out["error"] and holder["since"] in out["error"]
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"]["outcome"] == "healthy"
    assert fleet.lock_holder() is None


def test_a_pinned_environment_refuses_deploys(fleet: Fleet, healthy: Release):
    live_before = fleet.live()
    fleet.ledger.set_pin(healthy.ami_id, reason="incident 42", by="oncall")
    try:
        with pytest.raises(Refused) as info:
            fleet.deploy().run(fleet.ami("4.1.0"), options=Options(timeout=60))
    finally:
        fleet.ledger.clear_pin()
    assert info.value.exit_code == 6
    assert "pinned" in info.value.message and "incident 42" in info.value.message
    assert "baker unpin -e dev" in info.value.message, "says what to do"
    assert info.value.details["rule"] == "pinned"
    assert fleet.live() == live_before


def test_the_lock_is_renewed_only_by_its_owner(fleet: Fleet):
    state = fleet.project.settings.state
    time = FakeTime()
    mine = lock_for(
        fleet.aws, table=state.table, app="hello-web", env=ENV, lease_seconds=600, clock=time.clock
    )
    with mine:
        first = fleet.lock_holder()["expires_at"]
        time.advance(60)
        assert mine.renew()
        assert fleet.lock_holder()["expires_at"] == first + 60, "the lease runs 600 s from the renewal"
        # broken by an operator: the old owner can neither renew nor delete the new holder's lock
        mine.force_release()
        thief = lock_for(fleet.aws, table=state.table, app="hello-web", env=ENV, lease_seconds=600)
        thief.acquire()
        assert not mine.renew()
    assert fleet.lock_holder()["owner"] == thief.owner
    thief.release()
    assert fleet.lock_holder() is None


def test_a_lock_whose_lease_ran_out_is_taken_over_and_says_whose_it_was(fleet: Fleet):
    state = fleet.project.settings.state
    time = FakeTime()

    def lock() -> Lock:
        return lock_for(
            fleet.aws, table=state.table, app="hello-web", env=ENV, lease_seconds=120, clock=time.clock
        )

    dead = lock()
    dead.acquire()  # a run that died: nobody renews or releases this
    try:
        time.advance(119)
        with pytest.raises(Refused) as info:
            lock().acquire()
        assert info.value.exit_code == 6
        assert "lease ends in 1s" in info.value.message and dead.owner in info.value.message
        time.advance(2)
        heir = lock()
        heir.acquire()
    finally:
        lock().force_release()
    assert heir.took_over is not None and heir.took_over["owner"] == dead.owner
    assert fleet.lock_holder() is None


def test_unlock_force_breaks_a_stale_lock(fleet: Fleet, capsys: pytest.CaptureFixture[str]):
    state = fleet.project.settings.state
    stale = lock_for(fleet.aws, table=state.table, app="hello-web", env=ENV, lease_seconds=600)
    stale.acquire()  # a CI job that was killed: nobody will release this
    assert cli(capsys, fleet.root, "unlock", "-e", ENV)[0] == 2
    assert fleet.lock_holder() is not None
    code, out = cli(capsys, fleet.root, "unlock", "-e", ENV, "--force")
    assert code == 0
    assert out["released"]["owner"] == stale.owner
    assert fleet.lock_holder() is None


def test_a_failed_first_deploy_has_nothing_to_roll_back_to_and_says_what_is_live(
    staging_first_failure: dict[str, Any],
):
    bad, failed = staging_first_failure["ami"], staging_first_failure["error"]
    assert failed.exit_code == 5
    message = failed.message
    assert "no previous good release" in message
    assert f"Live: 2 on {bad} (2 unhealthy)" in message
    assert failed.details["outcome"] == "failed"
    assert [(r.ami_id, r.outcome) for r in staging_first_failure["releases"]] == [(bad, "failed")]
    assert staging_first_failure["live"] is None


def test_promote_takes_devs_ami_into_staging_and_a_pin_then_refuses_a_release(
    fleet: Fleet, healthy: Release, staging_first_failure: dict[str, Any], capsys: pytest.CaptureFixture[str]
):
    """staging (its fleet broken by its first deploy) gets dev's live AMI unchanged, healthy;
    pinned there, a release is refused (6) before anything is baked; unpinned, it goes again."""
    dev_ami = healthy.ami_id
    project = fleet.project
    staging = project.environment("staging")
    stage = Deploy(project, staging, fleet.aws, local=True, poll_min=0.5, poll_max=2)
    promoted = Promote(
        project, project.environment("dev"), staging, fleet.aws, fleet.aws, local=True, deploy=stage
    ).run(options=Options(timeout=120))
    assert (promoted["outcome"], promoted["ami_id"], promoted["from"]) == ("healthy", dev_ami, "dev")
    assert promoted["copies"] == {"us-east-1": dev_ami}, "same account and region: the very same AMI"
    ledger = Ledger(fleet.aws, table="baker-state", app="hello-web", env="staging")
    newest = ledger.releases()[0]
    assert (newest.kind, newest.outcome, newest.promoted_from["env"]) == ("promote", "healthy", "dev")
    assert newest.runtime == {"HELLO_GREETING": "hello from staging"}, "staging's runtime, not dev's"

    pinned = Pin(stage).pin(dev_ami, reason="freeze for the audit", options=Options(timeout=120))
    assert pinned["outcome"] == "healthy" and pinned["pinned"]["reason"] == "freeze for the audit"
    try:
        code, out = cli(capsys, fleet.root, "release", "-e", "staging")
        assert (code, out["exit_code"]) == (6, 6)
    finally:
        unpinned = Pin(stage).unpin()
    assert unpinned["unpinned"]["ami_id"] == dev_ami
    kinds = [(r.kind, r.outcome) for r in ledger.releases(limit=3)]
    assert kinds == [("unpin", "done"), ("pin", "healthy"), ("promote", "healthy")]
    # the result and the ledger row agree: the pinned AMI ran before the unpin (and still runs)
    assert unpinned["previous_ami_id"] == ledger.releases(limit=1)[0].previous_ami_id == dev_ami


def test_no_rollback_leaves_the_failed_state_and_says_so(fleet: Fleet, healthy: Release):
    good = healthy.ami_id
    bad = fleet.ami("6.0.0-broken")
    fleet.cloud.set_health(bad, "unhealthy")
    with pytest.raises(RollbackFailed) as info:
        fleet.deploy().run(bad, options=Options(timeout=10, rollback=False))
    assert info.value.exit_code == 5
    assert "--no-rollback" in info.value.message
    assert bad in info.value.message.split("Live:")[1]
    assert bad in {v["ami"] for v in fleet.live().values()}, "nothing was rolled back"
    newest = fleet.ledger.releases()[0]
    assert (newest.ami_id, newest.outcome) == (bad, "failed")
    assert fleet.ledger.live().ami_id == good
    assert fleet.lock_holder() is None


def test_sigint_during_the_wait_releases_the_lock_and_records_it(fleet: Fleet, first: dict[str, Any]):
    ami, stopped = interrupt_a_deploy(fleet, "5.0.0")
    assert stopped.exit_code == 130
    assert "lock released" in stopped.message
    assert fleet.lock_holder() is None
    newest = fleet.ledger.releases()[0]
    assert (newest.ami_id, newest.outcome) == (ami, "interrupted")
    # nothing keeps moving after baker exits: the refresh it started is cancelled, and it says so
    assert stopped.details["refresh_cancelled"] is True
    assert "instance refresh of hello-web-dev cancelled" in stopped.message
    assert "launch template" in stopped.message and "live:" in stopped.message
    refreshes = fleet.aws.client("autoscaling").describe_instance_refreshes(
        AutoScalingGroupName="hello-web-dev"
    )
    assert refreshes["InstanceRefreshes"][0]["Status"] in ("Cancelling", "Cancelled")
    assert "refresh cancelled" in newest.reason


def test_after_an_interrupt_the_next_deploy_names_what_the_fleet_ran_and_a_killed_run_is_abandoned(
    fleet: Fleet, interrupted: Release
):
    """The release before was interrupted and a run that died left one in_progress: the next
    deploy closes it as abandoned and names the AMI the fleet really ran as the previous."""
    running = {v["ami"] for v in fleet.live().values()}
    dead = fleet.ledger.new("deploy", fleet.ami("5.0.1"))
    fleet.ledger.write(dead)  # in_progress forever: its process was SIGKILLed
    ami = fleet.ami("5.1.0")
    result = fleet.deploy().run(ami, options=Options(timeout=120))
    assert result["outcome"] == "healthy"
    assert result["previous_ami_id"] in running
    closed = next(r for r in fleet.ledger.releases() if r.id == dead.id)
    assert closed.outcome == "abandoned" and "live then:" in closed.reason
