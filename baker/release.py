"""release: bake (or find the cached AMI), verify it when the project has smoke checks, deploy it.

The one line a CI job runs. What would refuse the deploy is asked before the bake (a pinned or
protected environment, a missing Terraform module), so nobody waits ten minutes for a refusal.
"""

from __future__ import annotations

from typing import Any

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
    ) -> None:
        self.project, self.env, self.aws = project, env, aws
        self.local = local
        self.build_host = build_host
        self.bake = Bake(project, env, aws, build_host=build_host, allow_dirty=allow_dirty)
        self.deploy = Deploy(project, env, aws, local=local)

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
        result = self.deploy.run(baked["ami_id"], kind="release", options=options, dry_run=dry_run)
        return {**result, "bake": baked}
