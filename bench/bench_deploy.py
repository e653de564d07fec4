"""Deploy figures in the local cloud (real Terraform + AWS provider against the emulator).

Prints:
- deploy time: the first deploy (creates the fleet and load balancer) and an update (new AMI,
  instance refresh of 2 instances);
- AWS API calls per health poll at 2 and at 20 instances (counted on the wire, per service);
- time from "all healthy" (seen by an independent observer polling every 0.2 s) to the return
  of ``Deploy.run``;
- a broken AMI (every target unhealthy) with ``deploy.unhealthy_timeout`` 10 s and an instance
  refresh that would not fail for 10 minutes: when baker gave up on it, and when the previous AMI
  was healthy again (the whole failed deploy, rollback included).

Run as root: ``python bench/bench_deploy.py``. It makes its own loopback-only network namespace,
its own local cloud and project copy under a temp dir, and removes all of it at the end.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from privatecloud import private_cloud  # noqa: E402

from baker.aws import AWS  # noqa: E402
from baker.config import load_project  # noqa: E402
from baker.deploy import Deploy, Options, Rollout, Watch  # noqa: E402
from baker.errors import RolledBack  # noqa: E402
from baker.local import cloud  # noqa: E402

REGION = "us-east-1"


def register(aws: AWS, version: str) -> str:
    ec2 = aws.client("ec2")
    image = ec2.register_image(
        Name=f"bench-hello-web-{version}-{time.time_ns()}",
        RootDeviceName="/dev/xvda",
        Architecture="x86_64",
        VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
    )["ImageId"]
    ec2.create_tags(Resources=[image], Tags=[{"Key": "baker:version", "Value": version}])
    return image


class Observer:
    """Polls every 0.2 s, independently of baker, for the moment the whole fleet is healthy on an AMI."""

    def __init__(self, aws: AWS, ami: str) -> None:
        self.aws, self.ami = aws, ami
        self.healthy_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # its own clients: the counters on the stage's clients must see only baker's calls
        aws = AWS(
            region=self.aws.region, endpoint_url=self.aws.endpoint_url, credentials=self.aws.credentials
        )
        watch: Watch | None = None
        while not self._stop.is_set():
            try:
                if watch is None:
                    asg = aws.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
                    tgs = aws.client("elbv2").describe_target_groups()["TargetGroups"]
                    if asg and tgs:
                        watch = Watch(aws, asg[0]["AutoScalingGroupName"], tgs[0]["TargetGroupArn"])
                if watch is not None:
                    state = watch.look(self.ami)
                    if state.healthy >= state.desired > 0 and state.old == 0:
                        self.healthy_at = time.monotonic()
                        return
            except Exception:  # the fleet may not exist yet
                pass
            time.sleep(0.2)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def count_calls(aws: AWS, services: tuple[str, ...]) -> Counter[str]:
    counter: Counter[str] = Counter()
    for service in services:
        client = aws.client(service)

        def hook(model: Any, service: str = service, **_: Any) -> None:
            counter[f"{service}.{model.name}"] += 1

        client.raw.meta.events.register("before-call", hook)
    return counter


def timed_deploy(project: Any, aws: AWS, ami: str) -> tuple[float, float | None]:
    env = project.environment("dev")
    stage = Deploy(project, env, aws, local=True)
    with Observer(aws, ami) as obs:
        started = time.monotonic()
        result = stage.run(ami, options=Options(timeout=300))
        returned = time.monotonic()
    assert result["outcome"] == "healthy", result
    # On a first deploy the instances are healthy long before Terraform has finished the load
    # balancer; what baker adds starts when both are true.
    applied = started + result["seconds"]["apply"]
    lag = returned - max(obs.healthy_at, applied) if obs.healthy_at else None
    return returned - started, lag


def timed_rollback(root: Path, aws: AWS, state: Path, bad: str, unhealthy_timeout: int) -> dict[str, float]:
    """Deploy an AMI whose targets all fail their checks; times of the failure and the rollback."""
    env_file = root / "environments" / "dev.yml"
    original = env_file.read_text()
    data = yaml.safe_load(original)
    data.setdefault("deploy", {})["unhealthy_timeout"] = unhealthy_timeout
    env_file.write_text(yaml.safe_dump(data))
    knobs = cloud.settings({}, state)
    cloud.settings({"refresh_timeout": 600}, state)
    cloud.set_health(bad, "unhealthy", state)
    polls: list[tuple[float, Rollout]] = []
    try:
        project = load_project(root)
        stage = Deploy(project, project.environment("dev"), aws, local=True)
        stage.on_poll = lambda look: polls.append((time.monotonic(), look))
        started = time.monotonic()
        try:
            stage.run(bad, options=Options(timeout=300))
        except RolledBack:
            pass
        else:
            raise RuntimeError("the broken AMI was not rolled back")
        returned = time.monotonic()
    finally:
        env_file.write_text(original)
        cloud.settings({"refresh_timeout": knobs["refresh_timeout"]}, state)
    on_bad = [(t, look) for t, look in polls if look.ami_id == bad]
    first_unhealthy = next(t for t, look in on_bad if look.new_states.get("unhealthy"))
    return {
        "unhealthy_seen": first_unhealthy - started,
        "gave_up": on_bad[-1][0] - started,
        "detection": on_bad[-1][0] - first_unhealthy,
        "back_healthy": returned - on_bad[-1][0],
        "total": returned - started,
    }


def calls_per_poll(aws: AWS, ami: str, asg_name: str, tg_arn: str, polls: int = 5) -> Counter[str]:
    counted = AWS(region=aws.region, endpoint_url=aws.endpoint_url, credentials=aws.credentials)
    counter = count_calls(counted, ("autoscaling", "elbv2", "ec2"))
    watch = Watch(counted, asg_name, tg_arn)
    for _ in range(polls):
        watch.look(ami)
    return Counter({k: v // polls for k, v in counter.items()})


def scale(aws: AWS, asg_name: str, ami: str, n: int) -> None:
    asg = aws.client("autoscaling")
    asg.update_auto_scaling_group(AutoScalingGroupName=asg_name, MinSize=n, MaxSize=n, DesiredCapacity=n)
    for _ in range(120):
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name])["AutoScalingGroups"][0]
        if sum(1 for i in group["Instances"] if i["LifecycleState"] == "InService") >= n:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the group did not reach {n} instances")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the temp dir (state, logs) behind")
    args = parser.parse_args()
    with private_cloud("deploy", parts=("environments", "terraform"), keep=args.keep) as (state, root):
        project = load_project(root)
        aws = cloud.aws(REGION, state_dir=state)

        first_ami, second_ami = register(aws, "1.0.0"), register(aws, "1.1.0")
        first_s, first_lag = timed_deploy(project, aws, first_ami)
        update_s, update_lag = timed_deploy(project, aws, second_ami)

        rollback = timed_rollback(root, aws, state, register(aws, "1.2.0-broken"), unhealthy_timeout=10)

        asg_name = "hello-web-dev"
        tg_arn = aws.client("elbv2").describe_target_groups(Names=["hello-web-dev-tg"])["TargetGroups"][0][
            "TargetGroupArn"
        ]
        at2 = calls_per_poll(aws, second_ami, asg_name, tg_arn)
        scale(aws, asg_name, second_ami, 20)
        at20 = calls_per_poll(aws, second_ami, asg_name, tg_arn)

        def fmt_lag(v: float | None) -> str:
            return f"{v:.2f} s" if v is not None else "n/a (the observer never saw it first)"

        print("deploy in the local cloud (Terraform 1.11 + AWS provider, moto emulator)")
        print(f"  first deploy (creates fleet, ALB, target group): {first_s:6.1f} s")
        print(f"  update to a new AMI (refresh of 2 instances):    {update_s:6.1f} s")
        print("API calls per health poll")
        for n, calls in ((2, at2), (20, at20)):
            detail = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
            print(f"  at {n:2d} instances: {sum(calls.values())}  ({detail})")
        print("time from 'all healthy' (and the apply done) to Deploy.run returning")
        print(f"  first deploy: {fmt_lag(first_lag)}")
        print(f"  update:       {fmt_lag(update_lag)}")
        print("a broken AMI (unhealthy_timeout 10 s; the refresh alone would run 10 minutes)")
        print(f"  first unhealthy target seen after the start:   {rollback['unhealthy_seen']:6.1f} s")
        print(f"  baker gave up (from the first unhealthy):      {rollback['detection']:6.1f} s")
        print(f"  rolled back, previous AMI healthy (from then): {rollback['back_healthy']:6.1f} s")
        print(f"  whole failed deploy, exit 4:                   {rollback['total']:6.1f} s")
        return 0


if __name__ == "__main__":
    sys.exit(main())
