"""Zero downtime, measured: a rolling refresh of 4 live instances behind the local load balancer.

A client sends GET /version through the load balancer's loopback port at a steady rate (25 per
second by default, one connection each) while an instance refresh with min healthy 50 % replaces
the 4 instances of version 1 by version 2. Prints requests sent and failed (goal: 0), when each
version answered first and last (seconds from the start of the refresh), how long the refresh
took, and per instance its boot time (systemd's own "Startup finished" in the container) and RSS
(the container's whole userspace).

The app is the probe of tests/livefleet.py (python3's http.server as a systemd unit, made without
Packer so the bench measures the local cloud, not a bake). The target group checks as the
Terraform module's does (/healthz every 10 s, 2 in a row decide).

Run as root: ``python bench/bench_live.py``. It makes its own loopback-only network namespace and
local cloud under a temp dir (bench/privatecloud.py) and removes all of it at the end. Bounded: the
refresh must end within --timeout seconds, the client stops 3 s after it.
"""

from __future__ import annotations

import argparse
import http.client
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from privatecloud import private_cloud  # noqa: E402

from baker.local import cloud  # noqa: E402
from tests.livefleet import bake_probe, in_instance, wait_for  # noqa: E402
from tests.localcloud import LocalCloud  # noqa: E402

NAME = "bench-live"


class Client:
    """GET /version through the load balancer at a fixed rate; every answer with its time."""

    def __init__(self, port: int, rate: float) -> None:
        self.port, self.interval = port, 1.0 / rate
        self.answers: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _one(self, at: float) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/version")
            resp = conn.getresponse()
            status, body = resp.status, resp.read().decode().strip()
            conn.close()
        except OSError as exc:
            status, body = 0, f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.answers.append((at, status, body))

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            t = threading.Thread(target=self._one, args=(time.monotonic(),), daemon=True)
            t.start()
            self._threads.append(t)
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


def fleet(cloud_: LocalCloud, ami_v1: str, ami_v2: str) -> dict[str, Any]:
    ec2, elb, asg = (cloud_.client(s) for s in ("ec2", "elbv2", "autoscaling"))
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    tg = elb.create_target_group(
        Name=f"{NAME}-tg", Protocol="HTTP", Port=8080, VpcId=vpc, HealthCheckPath="/healthz",
        HealthCheckIntervalSeconds=10, HealthCheckTimeoutSeconds=5, HealthyThresholdCount=2,
        UnhealthyThresholdCount=2, Matcher={"HttpCode": "200"},
    )["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
    elb.modify_target_group_attributes(
        TargetGroupArn=tg, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}]
    )
    lb = elb.create_load_balancer(Name=f"{NAME}-lb", Subnets=subnets, Type="application")["LoadBalancers"][0]
    listener = elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )["Listeners"][0]["ListenerArn"]  # fmt: skip
    template = ec2.create_launch_template(LaunchTemplateName=NAME, LaunchTemplateData={"ImageId": ami_v1})
    template_id = template["LaunchTemplate"]["LaunchTemplateId"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName=NAME, LaunchTemplate={"LaunchTemplateId": template_id, "Version": "1"},
        MinSize=4, MaxSize=8, DesiredCapacity=4, VPCZoneIdentifier=",".join(subnets),
        TargetGroupARNs=[tg], HealthCheckType="ELB", HealthCheckGracePeriod=60,
    )  # fmt: skip
    return {"tg": tg, "listener": listener, "template": template_id, "dns": lb["DNSName"]}


def listener_of(cloud_: LocalCloud, arn: str) -> dict[str, Any] | None:
    return next((b for b in cloud_.status()["load_balancers"] if b["listener_arn"] == arn), None)


def boot_figures(cloud_: LocalCloud) -> list[tuple[str, float | None, float]]:
    """(instance, userspace boot seconds, RSS MiB) of every live instance."""
    out = []
    for i in cloud_.status()["instances"]:
        if not i.get("live") or not i.get("container_pid"):
            continue
        text = in_instance(i["container_pid"], "systemd-analyze").stdout
        m = re.search(r"Startup finished in ([\d.]+)(ms|s)", text)
        boot = (float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)) if m else None
        out.append((i["instance_id"], boot, float(i.get("rss_mib") or 0)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=25.0, help="requests per second (default 25)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the refresh may take")
    parser.add_argument("--keep", action="store_true", help="leave the temp dir (state, logs) behind")
    args = parser.parse_args()
    with private_cloud("live", parts=(), keep=args.keep) as (state, _project):
        info = cloud.status(state)
        handle = LocalCloud(state_dir=state, endpoint=info["endpoint"], netns=info["netns"])
        try:
            return run(handle, args.rate, args.timeout)
        finally:
            if handle._build_host is not None:
                handle._build_host.down()


def run(handle: LocalCloud, rate: float, timeout: float) -> int:
    ami_v1, ami_v2 = bake_probe(handle, "1"), bake_probe(handle, "2")
    made = fleet(handle, ami_v1, ami_v2)
    asg = handle.client("autoscaling")

    def all_healthy() -> dict[str, Any] | None:
        found = listener_of(handle, made["listener"])
        return found if found and len(found["healthy_targets"]) == 4 else None

    t0 = time.monotonic()
    lb = wait_for("4 healthy targets", all_healthy, 120)
    first_healthy = time.monotonic() - t0
    port = int(lb["url"].rsplit(":", 1)[1])
    boots = boot_figures(handle)

    client = Client(port, rate)
    client.start()
    time.sleep(3)
    version = handle.client("ec2").create_launch_template_version(
        LaunchTemplateId=made["template"], LaunchTemplateData={"ImageId": ami_v2}
    )["LaunchTemplateVersion"]["VersionNumber"]
    asg.update_auto_scaling_group(
        AutoScalingGroupName=NAME,
        LaunchTemplate={"LaunchTemplateId": made["template"], "Version": str(version)},
    )
    started = time.monotonic()
    refresh = asg.start_instance_refresh(AutoScalingGroupName=NAME, Preferences={"MinHealthyPercentage": 50})[
        "InstanceRefreshId"
    ]

    def ended() -> dict[str, Any] | None:
        r = asg.describe_instance_refreshes(AutoScalingGroupName=NAME, InstanceRefreshIds=[refresh])
        found = r["InstanceRefreshes"][0]
        return found if found["Status"] in ("Successful", "Failed", "Cancelled") else None

    done = wait_for("the refresh", ended, timeout)
    refresh_s = time.monotonic() - started
    wait_for("4 healthy targets of version 2", all_healthy, 60)
    time.sleep(3)
    client.stop()
    boots += [b for b in boot_figures(handle) if b[0] not in {x[0] for x in boots}]

    answers = client.answers
    failed = [a for a in answers if a[1] != 200]
    span = (answers[-1][0] - answers[0][0]) if len(answers) > 1 else 0.0
    print("zero downtime: rolling refresh of 4 live instances, min healthy 50 %, through the local LB")
    print(
        f"  refresh: {done['Status']} in {refresh_s:.1f} s "
        f"(the first 4 instances healthy {first_healthy:.1f} s after the group was created)"
    )
    rate = len(answers) / span if span else 0.0
    print(f"  requests sent: {len(answers)} over {span:.1f} s ({rate:.1f}/s)")
    print(f"  failed: {len(failed)}")
    for at, status, body in failed[:5]:
        print(f"    at {at - started:+.2f} s: {status} {body[:80]}")
    for v in sorted({a[2] for a in answers if a[1] == 200}):
        times = [a[0] - started for a in answers if a[1] == 200 and a[2] == v]
        print(f"  version {v}: first {min(times):+.2f} s, last {max(times):+.2f} s ({len(times)} answered)")
    secs = [b for _, b, _ in boots if b is not None]
    rss = [r for _, _, r in boots if r]
    if secs:
        print(
            f"  boot to multi-user (systemd in the container, {len(secs)} instances): "
            f"min {min(secs):.2f} s, median {statistics.median(secs):.2f} s, max {max(secs):.2f} s"
        )
    if rss:
        print(
            f"  RSS per instance (whole container): min {min(rss):.0f} MiB, "
            f"median {statistics.median(rss):.0f} MiB, max {max(rss):.0f} MiB"
        )
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
