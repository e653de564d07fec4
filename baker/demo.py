"""The demo: the whole story on the local cloud, with the real Packer, Ansible and Terraform, and
instances that boot their image.

1. start the local cloud from an empty account (a running one is restarted);
2. release: package, bake, verify on a booted instance, first deploy, wait for a healthy fleet;
   the load balancer's local URL answers;
3. bake again: the recipe is unchanged, so a cache hit (no Packer run);
4. a new AMI rolled out with a new greeting (runtime configuration, not baked): every instance
   replaced, health-gated; the load balancer answers the new greeting. On an environment with
   layered images (bake.layers) the new AMI is the app layer rebaked alone on the cached base:
   with ``app_layer: snapshot`` written straight to EBS, no instance and no Packer;
5. a release whose runtime setting breaks the app's /healthz: the live instances' real health
   checks fail, baker rolls back (exit 4 of deploy) to the release before, its AMI and its runtime;
   the load balancer answers the greeting from before.

The local cloud is left running; ``baker local down`` stops it.
"""

from __future__ import annotations

import logging
import time
import urllib.request
from typing import Any

from baker.aws import AWS
from baker.bake import Bake
from baker.config import Environment, Project
from baker.deploy import Deploy
from baker.errors import BakerError, RolledBack
from baker.local import cloud
from baker.release import Release

log = logging.getLogger("baker")


class DemoFailed(BakerError):
    """The story did not go as told: a stage answered something other than the demo expects."""

    exit_code = 1


class Demo:
    def __init__(self, project: Project, env: Environment, *, allow_dirty: bool = False) -> None:
        self.project, self.env, self.allow_dirty = project, env, allow_dirty
        self.steps: list[dict[str, Any]] = []

    def step(self, name: str, said: str, **facts: Any) -> None:
        self.steps.append({"step": name, "said": said, **facts})
        log.info("== %s: %s", name, said)

    def answer(self, path: str = "/") -> str:
        """What the fleet's load balancer answers on its local URL (this process is in the cloud's
        namespace), e.g. the greeting on /."""
        fleet = f"{self.project.app.name}-{self.env.name}"[:28]
        for lb in cloud.status().get("load_balancers", []):
            if str(lb.get("load_balancer", "")).startswith(fleet):
                url = f"{lb['url']}{path}"
                with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - the local cloud's loopback URL
                    return resp.read().decode().strip()
        return "(no load balancer answers yet)"

    def deploy(self, aws: AWS) -> Deploy:
        return Deploy(self.project, self.env, aws, local=True, test_route=cloud.test_route(aws.endpoint_url))

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        if cloud.status().get("running"):
            log.info("== a local cloud runs already: restarting it, so the demo starts from an empty account")
            cloud.down()
        info = cloud.up()
        self.step("local up", f"emulator {info['endpoint']} in network namespace {info['netns']}")
        cloud.enter()
        s = self.env.settings.aws
        aws = cloud.aws(region=s.region, account_id=s.account_id)
        build_host = cloud.build_host()
        from baker.local.instances import LocalReach
        from baker.verify import Verify

        verify = Verify(self.project, self.env, aws, reach=LocalReach(cloud.resolve_state_dir()))
        released = Release(
            self.project,
            self.env,
            aws,
            local=True,
            build_host=build_host,
            allow_dirty=self.allow_dirty,
            verify=verify,
            deploy=self.deploy(aws),
        ).run()
        first = released["bake"]
        self.step(
            "release",
            f"baked {first['ami_id']} (version {first['version']}, recipe {first['recipe'][:12]}), verified "
            f"on a booted instance, fleet {released['outcome']}; the load balancer answers {self.answer()!r}",
            ami_id=first["ami_id"],
            version=first["version"],
            outcome=released["outcome"],
        )

        bake = Bake(self.project, self.env, aws, build_host=build_host, allow_dirty=self.allow_dirty)
        again = bake.run()
        if not again["cached"] or again["ami_id"] != first["ami_id"]:
            raise DemoFailed(
                f"the unchanged recipe was baked again ({again['ami_id']}) instead of a cache hit"
            )
        self.step("bake again", f"cache hit: {again['ami_id']}, no Packer run ({again['duration']:.2f} s)")

        # a layered environment rebakes only its app layer on the cached base (with
        # app_layer: snapshot, no instance and no Packer): what each commit of a CI pipeline pays
        layered = self.env.settings.bake.layers is not None
        new = bake.run(force=True, layer="app" if layered else None)
        if layered:
            self.step(
                "app layer",
                f"{new['ami_id']} baked on the cached base {new['base']['ami_id']} "
                f"({new['app_layer']}, {new['duration']:.1f} s"
                + (
                    f", {new['snapshot']['changed_blocks']} changed blocks written, no instance)"
                    if new.get("snapshot")
                    else ")"
                ),
                ami_id=new["ami_id"],
                base_ami_id=new["base"]["ami_id"],
            )
        runtime = {
            **self.env.settings.runtime.env,
            "HELLO_GREETING": f"hello from {self.env.name}, rolled forward",
        }
        forward = self.deploy(aws).run(new["ami_id"], runtime=runtime)
        self.step(
            "roll forward",
            f"{new['ami_id']} rolled out with a new greeting, every instance replaced, fleet "
            f"{forward['outcome']}; the load balancer answers {self.answer()!r}",
            ami_id=new["ami_id"],
            outcome=forward["outcome"],
        )

        broken = {**runtime, "HELLO_UNHEALTHY": "1"}
        log.info("== the same AMI with HELLO_UNHEALTHY=1: the app's /healthz answers 503 on every instance")
        try:
            self.deploy(aws).run(new["ami_id"], runtime=broken)
        except RolledBack as exc:
            self.step(
                "automatic rollback",
                f"the release failed its health gate ({exc.details.get('reason')}); rolled back: "
                f"{exc.details['rollback']['ami_id']} is live and healthy again with the runtime it ran with "
                f"(deploy exits {exc.exit_code}); the load balancer answers {self.answer()!r}",
                ami_id=new["ami_id"],
                live=exc.details["rollback"]["ami_id"],
                exit_code=exc.exit_code,
            )
        else:
            raise DemoFailed("the release with a broken /healthz was deployed without a rollback")
        return {"env": self.env.name, "steps": self.steps, "seconds": round(time.monotonic() - started, 1)}
