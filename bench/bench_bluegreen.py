"""Rolling against blue/green in one local cloud, side by side, with live instances.

Two environments of the same app, one per strategy (real Terraform + AWS provider against the
emulator; instances of the probe app of tests/livefleet.py booted for real, the load balancer's
listeners answering on loopback). Each: v1 deployed, then v2 while a client sends GET /version
through the users' listener (one connection per request, --rate per second), then ``baker
--local rollback -e ENV`` as an operator runs it: a new process, its clock started before it is
(its interpreter start, imports and configuration included; baker's modules from bytecode, in a
temp PYTHONPYCACHEPREFIX warmed first). Prints, per strategy:

- time from the command's start to v1 answering every request (the last answer that was not v1);
- when the command ended, and whether it launched instances;
- requests sent and failed (not 200) during the v2 deploy and during the rollback;
- API level, from an observer polling the emulator every 0.1 s: time from "rollback" until the
  users' listener forwards only to v1 targets, all healthy.

Run as root: ``python bench/bench_bluegreen.py``. It makes its own loopback-only network namespace,
local cloud and project copy under a temp dir, and removes all of it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_live import Client  # noqa: E402
from privatecloud import private_cloud  # noqa: E402

from baker.aws import AWS  # noqa: E402
from baker.config import load_project  # noqa: E402
from baker.deploy import Deploy, Options  # noqa: E402
from baker.local import cloud  # noqa: E402
from tests.livefleet import bake_probe  # noqa: E402
from tests.localcloud import LocalCloud  # noqa: E402

REGION = "us-east-1"


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


def users_port(aws: AWS, endpoint: str, lb_name: str) -> int:
    """The loopback port on which the local cloud serves the users' listener (port 80) of ``lb_name``."""
    elb = aws.client("elbv2")
    lb = elb.describe_load_balancers(Names=[lb_name])["LoadBalancers"][0]
    arn = next(
        x["ListenerArn"]
        for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
        if x["Port"] == 80
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = cloud.listener(endpoint, arn)
        if found and found.get("healthy_targets"):
            return int(str(found["url"]).rsplit(":", 1)[1])
        time.sleep(0.5)
    raise RuntimeError(f"the users' listener of {lb_name} has no live target")


def answers(client: Client, start: float, end: float) -> list[tuple[float, int, str]]:
    return [a for a in list(client.answers) if start <= a[0] <= end]


def command_env(pyc: str) -> dict[str, str]:
    """The environment of the ``baker`` commands: this tree's baker, its bytecode kept in ``pyc``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": pyc}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def rollback_command(root: Path, name: str, env: dict[str, str]) -> dict[str, Any]:
    """``baker rollback`` as an operator types it (``-v``: every step it logs); its JSON result, and
    each line it printed on stderr with the seconds since the command started."""
    argv = [sys.executable, "-m", "baker", "--project", str(root), "--local", "--output", "json", "-v"]
    started = time.monotonic()
    proc = subprocess.Popen(
        [*argv, "rollback", "-e", name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    said: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            said.append((time.monotonic() - started, line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out, _ = proc.communicate()
    reader.join()
    if proc.returncode != 0:
        tail = "\n".join(line for _, line in said[-40:])
        raise SystemExit(f"baker rollback -e {name} failed ({proc.returncode}):\n{tail}")
    result = dict(json.loads(out.splitlines()[-1]))
    result["said"] = said
    return result


def story(
    root: Path, aws: AWS, endpoint: str, name: str, v1: str, v2: str, rate: float, command: dict[str, str]
) -> dict[str, Any]:
    """``command``: the environment variables of the ``baker`` command the operator types."""
    project = load_project(root)
    env = project.environment(name)
    lb_name = f"hello-web-{name}-lb"

    def deploy() -> Deploy:
        return Deploy(
            project,
            env,
            aws,
            local=True,
            poll_min=0.5,
            poll_max=2,
            test_route=cloud.test_route(aws.endpoint_url),
        )

    assert deploy().run(v1, options=Options(timeout=600))["outcome"] == "healthy"
    client = Client(users_port(aws, endpoint, lb_name), rate)
    client.start()
    with Observer(aws, lb_name) as obs:
        time.sleep(2)
        started = time.monotonic()
        assert deploy().run(v2, options=Options(timeout=600))["outcome"] == "healthy"
        deployed = time.monotonic()
        time.sleep(2)
        back_at = time.monotonic()
        result = rollback_command(root, name, command)
        returned = time.monotonic()
        assert result["outcome"] == "healthy", result
        time.sleep(3)
        client.stop()
        ended = time.monotonic()
    during_deploy = answers(client, started, deployed)
    during_back = answers(client, back_at, ended)
    not_v1 = [at for at, status, body in during_back if status != 200 or body != "1"]
    return {
        "serving_v1_s": (max(not_v1) - back_at) if not_v1 else 0.0,
        "api_v1_s": obs.first(back_at, v1),
        "returned_s": returned - back_at,
        "launched": result.get("launched", True),
        "traffic_first": result.get("traffic_first", False),
        "deploy_s": deployed - started,
        "deploy_sent": len(during_deploy),
        "deploy_failed": sum(1 for _, status, _ in during_deploy if status != 200),
        "back_sent": len(during_back),
        "back_failed": sum(1 for _, status, _ in during_back if status != 200),
        "said": result["said"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    parser.add_argument("--keep", action="store_true", help="leave the temp dir (state, logs) behind")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="baker-bench-pyc-") as pyc,
        private_cloud("bluegreen", parts=("environments", "terraform"), keep=args.keep) as (state, root),
    ):
        env = command_env(pyc)
        warm = (
            "import baker.cli.rollback_cmd, baker.deploy.rollback, baker.local.cloud, baker.config, botocore"
        )
        subprocess.run([sys.executable, "-c", warm], env=env, check=True)  # the bytecode, unmeasured
        info = cloud.status(state)
        handle = LocalCloud(state_dir=state, endpoint=info["endpoint"], netns=info["netns"])
        try:
            aws = cloud.aws(REGION, state_dir=state)
            v1, v2 = bake_probe(handle, "1"), bake_probe(handle, "2")
            environment(root, "roll", "rolling")
            environment(root, "bg", "blue_green")
            figures = {
                n: story(root, aws, info["endpoint"], n, v1, v2, args.rate, env) for n in ("roll", "bg")
            }
        finally:
            if handle._build_host is not None:
                handle._build_host.down()
        report(figures, args.rate)
        return 0


def report(figures: dict[str, dict[str, Any]], rate: float) -> None:
    def s(v: float | None) -> str:
        return f"{v:.1f} s" if v is not None else "n/a"

    def row(label: str, rolling: str, blue_green: str) -> None:
        print(f"  {label:54}{rolling:>12}{blue_green:>12}")

    r, b = figures["roll"], figures["bg"]
    print("rolling vs blue/green in the local cloud: live instances (systemd-nspawn), the local load")
    print(f"balancer on loopback, real Terraform 1.11 + AWS provider; GET /version at {rate:g}/s")
    row("", "rolling", "blue/green")
    row("baker rollback: from its start until v1 answers all", s(r["serving_v1_s"]), s(b["serving_v1_s"]))
    row("baker rollback: from its start until it ended", s(r["returned_s"]), s(b["returned_s"]))
    row("rollback launched instances", str(r["launched"]), str(b["launched"]))
    row("rollback moved the users before Terraform ran", str(r["traffic_first"]), str(b["traffic_first"]))
    row(
        "rollback: failed / sent",
        f"{r['back_failed']}/{r['back_sent']}",
        f"{b['back_failed']}/{b['back_sent']}",
    )
    row("v2 deploy: duration", s(r["deploy_s"]), s(b["deploy_s"]))
    row(
        "v2 deploy: failed / sent",
        f"{r['deploy_failed']}/{r['deploy_sent']}",
        f"{b['deploy_failed']}/{b['deploy_sent']}",
    )
    row("API level: until the listener serves only v1, healthy", s(r["api_v1_s"]), s(b["api_v1_s"]))
    if r["serving_v1_s"] and b["serving_v1_s"]:
        print(f"  blue/green answers v1 everywhere {r['serving_v1_s'] / b['serving_v1_s']:.1f}x sooner")
    print("the blue/green rollback's own lines (-v), seconds since it started, until the users were moved:")
    for at, line in b["said"]:
        print(f"  {at:6.2f}  {line[:110]}")
        if "traffic: 100%" in line:
            break


if __name__ == "__main__":
    sys.exit(main())
