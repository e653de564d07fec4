"""release: bake (or find the cached AMI), verify it when the project has smoke checks, deploy it.

The one line a CI job runs. What would refuse the deploy is asked before the bake (a pinned or
protected environment, a missing Terraform module), so nobody waits ten minutes for a refusal.
An AMI that already carries a valid ``baker:verified`` for the same smoke checks (a cache hit
verified by an earlier release) is not booted again; a failing check stops the release before
the deploy (exit 7: nothing was deployed).
"""

from __future__ import annotations

from typing import Any

from baker import images, provenance
from baker.aws import AWS
from baker.bake import Bake
from baker.config import Environment, Project
from baker.deploy import Deploy, Options
from baker.preflight import check_project_files


class Release:
    def __init__(
        self,
        project: Project,
        env: Environment,
        aws: AWS,
        *,
        local: bool = False,
        build_host: Any = None,
        allow_dirty: bool = False,
        verify: Any = None,
        deploy: Deploy | None = None,
    ) -> None:
        self.project, self.env, self.aws = project, env, aws
        self.local = local
        self.build_host = build_host
        self.bake = Bake(project, env, aws, build_host=build_host, allow_dirty=allow_dirty)
        #: the deploy half, with an AWS of its own when it runs under another role than the bake
        self.deploy = deploy or Deploy(project, env, aws, local=local)
        #: baker.verify.Verify, or None when the project has no smoke checks
        self.verify = verify

    def _verified(self, ami_id: str) -> dict[str, Any] | None:
        """Verify the AMI unless it already passed these very checks; None without smoke checks."""
        if self.verify is None:
            return None
        from baker.verify import checks_digest

        image = images.require(self.aws.client("ec2"), ami_id, self.aws.region)
        said = provenance.parse_verified(image.tags.get(provenance.VERIFIED))
        if said is not None and said[1] == checks_digest(list(self.project.settings.smoke_checks)):
            return {
                "ami_id": ami_id,
                "verified": True,
                "checks": [],
                "already": image.tags[provenance.VERIFIED],
            }
        result: dict[str, Any] = self.verify.run(ami_id)
        return result

    def run(
        self, *, force: bool = False, dry_run: bool = False, options: Options | None = None
    ) -> dict[str, Any]:
        self.deploy.gate.check_before_bake("release")
        check_project_files(self.project, self.env, terraform=True)
        baked = self.bake.run(force=force, dry_run=dry_run)
        if dry_run and not baked.get("ami_id"):
            return {
                "env": self.env.name,
                "outcome": "planned",
                "ami_id": None,
                "previous_ami_id": None,
                "bake": baked,
            }
        verified = None if dry_run else self._verified(baked["ami_id"])
        result = self.deploy.run(baked["ami_id"], kind="release", options=options, dry_run=dry_run)
        return {**result, "bake": baked, "verify": verified}
