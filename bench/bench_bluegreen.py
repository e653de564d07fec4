"""Rolling against blue/green in one local cloud, side by side (real Terraform + AWS provider).

Two environments of the same app, one per strategy, each: v1 deployed, v2 deployed, then
``baker rollback``. An observer polls the emulator every 0.1 s, independently of baker, and
prints:

- time from "rollback" to the old version serving every request: rolling, until every in-service
  instance behind the users' listener runs v1 and is healthy; blue/green, until the users'
  listener forwards only to the v1 color and its targets are healthy (plus when ``Rollback.run``
  returned, Terraform having recorded the weights);
- requests that would have failed during the v2 deploy: this is the API-level figure (the
  emulator's load balancer does not answer yet): the share of samples during the deploy in which
  the users' listener had no healthy target to forward to (an ALB answers 503 then). Requests cut
  by an instance terminated under them need a load balancer that answers and are not counted.

Run as root: ``python bench/bench_bluegreen.py``. It makes its own loopback-only network namespace,
local cloud and project copy under a temp dir, and removes all of it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from privatecloud import private_cloud  # noqa: E402

from baker.aws import AWS  # noqa: E402
from baker.config import load_project  # noqa: E402
from baker.deploy import Deploy, Options  # noqa: E402
from baker.local import cloud  # noqa: E402
from baker.rollback import Rollback  # noqa: E402

REGION = "us-east-1"


def register(aws: AWS, version: str) -> str:
    ec2 = aws.client("ec2")
    image = ec2.register_image(
        Name=f"bench-bg-{version}-{time.time_ns()}",
        RootDeviceName="/dev/xvda",
        Architecture="x86_64",
        VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
    )["ImageId"]
    ec2.create_tags(
        Resources=[image],
        Tags=[{"Key": "baker:app", "Value": "hello-web"}, {"Key": "baker:version", "Value": version}],
    )
    return image


def serving(aws: AWS, lb_name: str) -> dict[str, Any]:
    """What the users' listener forwards to now: per weighted target group, its targets' AMI and health."""
    elb, ec2 = aws.client("elbv2"), aws.client("ec2")
    lb = elb.describe_load_balancers(Names=[lb_name])["LoadBalancers"][0]
    listener = next(
        x
        for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
        if x["Port"] == 80
    )
    action = listener["DefaultActions"][0]
    if "ForwardConfig" in action:
        groups = [(t["TargetGroupArn"], t.get("Weight", 1)) for t in action["ForwardConfig"]["TargetGroups"]]
    else:
        groups = [(action["TargetGroupArn"], 1)]
    targets: list[tuple[str, str]] = []  # (ami, health) of targets in groups with weight > 0
    for arn, weight in groups:
        if not weight:
            continue
        health = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        ids = [t["Target"]["Id"] for t in health]
        amis: dict[str, str] = {}
        if ids:
            for res in ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": ids}])[
                "Reservations"
            ]:
                for inst in res["Instances"]:
                    amis[inst["InstanceId"]] = inst["ImageId"]
        targets += [(amis.get(t["Target"]["Id"], "?"), t["TargetHealth"]["State"]) for t in health]
    return {"targets": targets}


class Observer:
    """Samples ``serving`` every 0.1 s on its own clients."""

    def __init__(self, aws: AWS, lb_name: str) -> None:
        self.aws = AWS(region=aws.region, endpoint_url=aws.endpoint_url, credentials=aws.credentials)
        self.lb_name = lb_name
        self.samples: list[tuple[float, list[tuple[str, str]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # the load balancer may not exist yet
                self.samples.append((time.monotonic(), serving(self.aws, self.lb_name)["targets"]))
            time.sleep(0.1)

    def first(self, since: float, ami: str) -> float | None:
        """When only ``ami`` was served, every such target healthy (seconds after ``since``)."""
        for at, targets in self.samples:
            healthy = [a for a, h in targets if h == "healthy"]
            if (
                at >= since
                and healthy
                and all(a == ami for a in healthy)
                and all(h == "healthy" for _, h in targets)
            ):
                return at - since
        return None

    def unserved(self, start: float, end: float) -> tuple[int, int]:
        """(samples with no healthy target behind the listener, samples) in [start, end]."""
        window = [t for at, t in self.samples if start <= at <= end]
        return sum(1 for t in window if not any(h == "healthy" for _, h in t)), len(window)

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def environment(root: Path, name: str, strategy: str) -> None:
    data = {
        "runtime": {"env": {"HELLO_GREETING": f"hello from {name}"}},
        "deploy": {
            "backend": {
                "bucket": "baker-tfstate-123456789012",
                "key": f"hello-web/{name}.tfstate",
                "region": REGION,
            },
            "variables": {"name": f"hello-web-{name}"},
            "strategy": strategy,
            "step_seconds": 0,
        },
    }
    (root / "environments" / f"{name}.yml").write_text(yaml.safe_dump(data))


def story(root: Path, aws: AWS, name: str) -> dict[str, Any]:
    project = load_project(root)
    env = project.environment(name)

    def deploy() -> Deploy:
        return Deploy(project, env, aws, local=True, poll_min=0.5, poll_max=2)

    v1, v2 = register(aws, "1.0.0"), register(aws, "2.0.0")
    assert deploy().run(v1, options=Options(timeout=300))["outcome"] == "healthy"
    with Observer(aws, f"hello-web-{name}-lb") as obs:
        started = time.monotonic()
        assert deploy().run(v2, options=Options(timeout=300))["outcome"] == "healthy"
        deployed = time.monotonic()
        time.sleep(0.5)
        back_at = time.monotonic()
        result = Rollback(deploy()).run(options=Options(timeout=300))
        returned = time.monotonic()
        assert result["outcome"] == "healthy", result
        time.sleep(0.5)
    unserved, samples = obs.unserved(started, deployed)
    return {
        "deploy_s": deployed - started,
        "serving_v1_s": obs.first(back_at, v1),
        "returned_s": returned - back_at,
        "launched": result.get("launched", True),
        "unserved": unserved,
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the temp dir (state, logs) behind")
    args = parser.parse_args()
    with private_cloud("bluegreen", parts=("environments", "terraform"), keep=args.keep) as (state, root):
        aws = cloud.aws(REGION, state_dir=state)
        environment(root, "roll", "rolling")
        environment(root, "bg", "blue_green")
        figures = {name: story(root, aws, name) for name in ("roll", "bg")}

        def s(v: float | None) -> str:
            return f"{v:.1f} s" if v is not None else "n/a"

        def row(label: str, rolling: str, blue_green: str) -> None:
            print(f"  {label:50}{rolling:>10}{blue_green:>12}")

        r, b = figures["roll"], figures["bg"]
        print("rolling vs blue/green in the local cloud (Terraform 1.11 + AWS provider, moto emulator;")
        print("API level: the emulator's load balancer does not answer, weights and health are its API)")
        row("", "rolling", "blue/green")
        row("rollback: until v1 alone serves, all healthy", s(r["serving_v1_s"]), s(b["serving_v1_s"]))
        row("rollback: until Rollback.run returned", s(r["returned_s"]), s(b["returned_s"]))
        row("rollback launched instances", str(r["launched"]), str(b["launched"]))
        row("v2 deploy: duration", s(r["deploy_s"]), s(b["deploy_s"]))
        row(
            "v2 deploy: samples with no healthy target served",
            f"{r['unserved']}/{r['samples']}",
            f"{b['unserved']}/{b['samples']}",
        )
        if r["serving_v1_s"] and b["serving_v1_s"]:
            print(f"  blue/green serves v1 alone {r['serving_v1_s'] / b['serving_v1_s']:.1f}x sooner")
        return 0


if __name__ == "__main__":
    sys.exit(main())
