"""Faults of the world around baker, against the real local cloud: AWS throttling us, the AWS
endpoint restarting during the health wait, Packer killed mid-build.

- Throttling: the emulator's knob (baker/local/moto/throttling.py) answers a share of EC2, Auto Scaling,
  ELBv2 and DynamoDB requests as each throttles (RequestLimitExceeded / Throttling /
  ThrottlingException, HTTP 400); `status`, `gc` and a `deploy` (Terraform's provider included)
  succeed through it with the right answers, and the emulator counted the throttled answers, so
  the tests cannot pass without the fault.
- Restart: a private local cloud (its own state dir and namespace, as tests/README allows for
  this test) is stopped while two deploys wait on health, and started again (amnesic: moto keeps
  nothing) after the deadline of one and before the deadline of the other; each deploy ends by its
  deadline, exit 5, saying when and why the endpoint stopped answering, and that it never came
  back or that the group is gone.
- Packer killed: the real packer process of a `baker --local bake` is SIGKILLed while it builds;
  baker exits 3 naming packer's death, and no instance, key pair or security group of the
  build is left in the emulator.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.config
import botocore.exceptions
import pytest
import yaml

from baker.local import cloud, kernel, netns
from tests.conftest import commit_all, copy_project, need_tools
from tests.harness import Baker
from tests.localcloud import register_ami

pytestmark = pytest.mark.integration

TOKEN_VAR = "BAKER_TEST_TAG_TOKEN"
TOKEN = "tag-api-token-never-shown-5521"


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """``baker --local ARGS`` to its end: the exit code, its JSON result, and everything it printed."""
    code, result, err = Baker(root, env=env)(*args)
    return code, result, err + json.dumps(result)


def write_env(root: Path, name: str, settings: dict[str, Any]) -> None:
    (root / "environments" / f"{name}.yml").write_text(yaml.safe_dump(settings))


# ---------------------------------------------------------------- throttling


@pytest.fixture
def throttle(local_cloud: Any) -> Iterator[Callable[..., dict[str, Any]]]:
    """Set the emulator's throttling knob (no arguments: read it); off again after the test."""
    try:
        yield lambda **knobs: local_cloud.settings(**knobs)
    finally:
        local_cloud.settings(throttle_share=0, throttle_seconds=0)


def counted(knobs: dict[str, Any]) -> dict[str, int]:
    return dict(knobs["throttled"])


def grew(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {code: n - before.get(code, 0) for code, n in after.items() if n > before.get(code, 0)}


def test_throttled_answers_are_what_each_service_says(local_cloud: Any, throttle: Callable[..., Any]):
    """Without retries, each service's throttling error as botocore sees it: code and HTTP 400."""
    once = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1})
    session = local_cloud.aws().session()
    calls = {
        "ec2": ("RequestLimitExceeded", lambda c: c.describe_images(Owners=["self"])),
        "autoscaling": ("Throttling", lambda c: c.describe_auto_scaling_groups()),
        "elbv2": ("Throttling", lambda c: c.describe_load_balancers()),
        "dynamodb": ("ThrottlingException", lambda c: c.list_tables()),
    }
    throttle(throttle_share=1.0)
    for service, (code, call) in calls.items():
        client = session.client(service, endpoint_url=local_cloud.endpoint, config=once)
        with pytest.raises(botocore.exceptions.ClientError) as err:
            call(client)
        assert err.value.response["Error"]["Code"] == code, service
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, service
    assert counted(throttle()).keys() >= {"RequestLimitExceeded", "Throttling", "ThrottlingException"}
    throttle(throttle_share=0)
    local_cloud.client("ec2").describe_images(Owners=["self"])  # and off again


def test_status_and_gc_answer_right_through_throttling(
    local_cloud: Any, throttle: Callable[..., Any], tmp_path: Path
):
    root = copy_project(tmp_path, "environments")
    old = register_ami(local_cloud.aws(), "0.0.1-throttled")
    before = counted(throttle())
    throttle(throttle_share=0.5)  # every second request to EC2, Auto Scaling, ELBv2, DynamoDB
    code, status, said = run(root, "status")
    assert code == 0, said
    assert {e["env"] for e in status["environments"]} >= {"dev", "staging", "prod"}
    code, gc, said = run(root, "gc", "--keep", "1")
    assert code == 0, said
    considered = {i["ami_id"] for i in gc["deleted"]} | {i["ami_id"] for i in gc["kept"]}
    assert old in considered and gc.get("dry_run", True)
    assert local_cloud.client("ec2").describe_images(ImageIds=[old])["Images"], "a dry run deletes nothing"
    more = grew(before, counted(throttle()))
    assert more.get("RequestLimitExceeded", 0) >= 2 and more.get("ThrottlingException", 0) >= 2, more


@pytest.fixture(scope="module")
def fleet(local_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An environment with a fleet of its own (its own Terraform state), deployed once, and a
    secret-bearing Terraform variable (a tag named api_token from $BAKER_TEST_TAG_TOKEN)."""
    need_tools("terraform")
    root = copy_project(tmp_path_factory.mktemp("throttled-project"), "environments", "terraform")
    write_env(
        root,
        "throttled",
        {
            "deploy": {
                "backend": {"bucket": "baker-tfstate-123456789012", "key": "hello-web/throttled.tfstate"},
                "variables": {"name": "hello-web-throttled", "tags": {"api_token": {"env": TOKEN_VAR}}},
                "unhealthy_timeout": 30,
            }
        },
    )
    ami = register_ami(local_cloud.aws(), "5.0.0-throttled")
    code, result, said = run(
        root, "deploy", "-e", "throttled", "--ami", ami, "--timeout", "180", env={TOKEN_VAR: TOKEN}
    )
    assert (code, result.get("outcome")) == (0, "healthy"), said[-4000:]
    return root


def test_a_deploy_succeeds_through_throttling_and_never_shows_a_secret_variable(
    fleet: Path, local_cloud: Any, throttle: Callable[..., Any]
):
    ami = register_ami(local_cloud.aws(), "5.0.1-throttled")
    before = counted(throttle())
    throttle(throttle_share=0.5, throttle_seconds=40)  # Terraform's plan and apply, and the wait
    code, result, said = run(
        fleet,
        "-v",
        "-v",
        "deploy",
        "-e",
        "throttled",
        "--ami",
        ami,
        "--timeout",
        "180",
        env={TOKEN_VAR: TOKEN},
    )
    assert (code, result.get("outcome"), result.get("ami_id")) == (0, "healthy", ami), said[-4000:]
    more = grew(before, counted(throttle()))
    assert sum(more.values()) >= 10, more  # Terraform's provider and baker were both throttled, and retried
    # the secret-bearing variable reached Terraform (it tags the group), and no line baker printed
    group = local_cloud.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=["hello-web-throttled"]
    )["AutoScalingGroups"][0]
    assert {"Key": "api_token", "Value": TOKEN} in [
        {"Key": t["Key"], "Value": t["Value"]} for t in group["Tags"]
    ]
    assert "[terraform plan]" in said, "-v -v relays Terraform's plan lines"
    assert TOKEN not in said
    assert not [p for p in (fleet / ".baker").rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]


# ---------------------------------------------------------------- the endpoint restarted during the wait


@pytest.fixture
def private_cloud(isolated: str, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local cloud of this test alone: its own state dir and a namespace the test makes, so the
    emulator can be restarted in the same namespace (`up` after a crash keeps a namespace it did
    not create). Everything is taken down afterwards, also on failure."""
    name = f"baker-r{os.getpid()}"
    state_dir = tmp_path / "cloud"
    netns.create(name)
    try:
        cloud.up(state_dir, name, rootfs=False, timings={"initial_seconds": 1})
        yield state_dir, name
    finally:
        try:
            cloud.down(state_dir, name)
        finally:
            netns.delete(name)


#: how long the emulator stays away: longer than baker's longest poll interval (15 s), so that a
#: poll meets the closed port
AWAY = 50.0
#: the deploys' deadlines, counted from the start of their wait: one passes while the emulator is
#: away (that deploy ends at it, the endpoint never back), one outlives the outage (that deploy meets
#: the fresh emulator, which remembers nothing, and finds its group gone)
DEADLINES = {"away": 45, "restart": 120}


def test_the_endpoint_stopping_during_the_wait_ends_each_deploy_by_its_deadline_saying_what_happened(
    private_cloud: tuple[Path, str], tmp_path: Path
):
    need_tools("terraform")
    state_dir, name = private_cloud
    (tmp_path / "p").mkdir()
    root = copy_project(tmp_path / "p", "environments", "terraform")
    aws = cloud.aws("us-east-1", None, state_dir)
    ami = cloud.in_netns(name, lambda: register_ami(aws, "6.0.0-restart"))
    cloud.set_health(ami, "initial", state_dir)  # never healthy: each deploy waits to its deadline
    deploys = {}
    for env, timeout in DEADLINES.items():  # two fleets, two deploys at once: one outage for both
        write_env(
            root, env, {"deploy": {"variables": {"name": f"hello-web-{env}"}, "unhealthy_timeout": None}}
        )
        deploys[env] = Baker(root, env={"BAKER_LOCAL_DIR": str(state_dir)}).start(
            "deploy", "-e", env, "--ami", ami, "--timeout", str(timeout)
        )
    waiting: dict[str, float] = {}
    results: dict[str, tuple[int, dict[str, Any]]] = {}
    try:
        for env, deploy in deploys.items():
            deploy.until(lambda d=deploy: "waiting:" in d.said)
            waiting[env] = time.monotonic()
        emulator = json.loads((state_dir / cloud.STATE_FILE).read_text())["pids"]["emulator"]
        assert kernel.stop(emulator)  # the emulator's own PID, recorded by `up`
        stopped = time.monotonic()
        assert stopped - waiting["away"] < DEADLINES["away"], "the away deploy's deadline passed first"
        time.sleep(AWAY)  # baker's polls meet a closed port
        cloud.up(state_dir, name, rootfs=False)  # a fresh emulator in the same namespace
        for env, deploy in deploys.items():
            results[env] = deploy.finish(timeout=DEADLINES[env] + 120)
    finally:
        for deploy in deploys.values():
            deploy.stop()
    for env, (code, result) in results.items():
        said = deploys[env].said
        assert code == 5, said[-3000:]  # a human is needed: nothing could be recorded or rolled back
        error = result["error"]
        assert "the AWS endpoint http://127.0.0.1:5000 stopped answering at" in error, error
        assert "(connection refused)" in error, error
    error = results["away"][1]["error"]
    assert "had not answered again when the deadline passed" in error, error
    error = results["restart"][1]["error"]
    assert "the Auto Scaling group hello-web-restart is gone" in error, error
    assert "Live when last seen: no instance in service" in error, error
    for env, began in waiting.items():
        ended = (deploys[env].ended or time.monotonic()) - began
        assert ended <= max(DEADLINES[env], AWAY) + 30, (
            f"{env}: the deploy ended {ended:.0f}s after its wait began"
        )
    # the away deploy ended at its deadline, while the emulator was still away
    assert (deploys["away"].ended or 0) - waiting["away"] <= DEADLINES["away"] + 20


# ---------------------------------------------------------------- packer killed mid-build


@pytest.fixture
def bake_project(tmp_path: Path) -> Path:
    need_tools("packer", "ansible-playbook", "dpkg-deb", "git", "ssh-keygen")
    root = copy_project(tmp_path, "environments", "packer", "ansible", "examples/hello-web")
    commit_all(root)
    return root


def build_of(ec2: Any, build_id: str) -> dict[str, list[str]]:
    """What the emulator holds of one build: instances not terminated, key pairs, security groups."""
    instances, groups = [], set()
    for res in ec2.describe_instances(Filters=[{"Name": "tag:baker:build-id", "Values": [build_id]}])[
        "Reservations"
    ]:
        for inst in res["Instances"]:
            groups.update(g["GroupId"] for g in inst.get("SecurityGroups", []))
            if inst["State"]["Name"] != "terminated":
                instances.append(inst["InstanceId"])
    alive = ec2.describe_security_groups(
        Filters=[{"Name": "group-id", "Values": sorted(groups) or ["sg-none"]}]
    )
    keys = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [f"baker-build-{build_id}"]}])
    return {
        "instances": instances,
        "security_groups": [g["GroupId"] for g in alive["SecurityGroups"]],
        "key_pairs": [k["KeyName"] for k in keys["KeyPairs"]],
        "all_groups": sorted(groups),
    }


def test_packer_killed_mid_build_leaves_nothing_of_its_build_and_baker_says_so(
    local_cloud: Any, debian_rootfs: Path, bake_project: Path
):
    ec2 = local_cloud.client("ec2")
    bake = Baker(bake_project).start("bake", "-e", "dev", "--force", "--allow-dirty")
    packer: list[int] = []

    def packer_building() -> bool:
        """Packer has its instance (and so its security group) and provisions it over SSH."""
        if "TASK [" not in bake.said and "Uploading" not in bake.said:
            return False
        packer[:] = [
            pid
            for pid, argv in kernel.descendants(bake.proc.pid)
            if argv[1:2] == ["build"] and "packer" in argv[0]
        ]
        return bool(packer)

    try:
        bake.until(packer_building, timeout=600)
        build_id = next(
            line.split('"')[1]
            for line in next(bake_project.glob(".baker/**/ami.pkrvars.hcl")).read_text().splitlines()
            if line.startswith("build_id")
        )
        during = build_of(ec2, build_id)
        assert during["instances"] and during["security_groups"], during  # the fault hits a real build
        started = [pid for pid, _ in kernel.descendants(bake.proc.pid)]
        os.kill(packer[0], signal.SIGKILL)  # the packer process of the bake this test started, by its PID
        code, result = bake.finish(timeout=600)
    finally:
        bake.stop()
    assert code == 3, bake.said[-3000:]
    assert "packer was killed by SIGKILL mid-build" in result["error"], result
    after = build_of(ec2, build_id)
    assert after["instances"] == [] and after["security_groups"] == [] and after["key_pairs"] == [], after
    assert set(during["instances"]) | set(during["security_groups"]) <= set(result["swept"]), result
    # nothing the bake started runs on: packer's plugins and Ansible end with it
    deadline = time.monotonic() + 60
    while [pid for pid in started if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in started if _alive(pid)], "a process of the killed build is still running"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
