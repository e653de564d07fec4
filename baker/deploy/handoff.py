"""The Terraform handoff of one environment: the module's variables, plan, the plan gate, apply
and outputs. A release reaches Terraform only through ``Handoff.apply``, which writes its intent
to the ledger before the apply and the fleet it changed after."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from baker.aws import AWS, error_code
from baker.config import VARIABLES, Environment, Project, resolve_secret_refs, secret_values
from baker.deploy.records import Records
from baker.errors import AWSError, BakerError, Refused
from baker.ledger import Release
from baker.plan import Plan, applied_strategy, gate, plan_text
from baker.terraform import Terraform, backend_config, find_mirror

log = logging.getLogger("baker")


def terraform_for(project: Project, env: Environment, aws: AWS, *, local: bool = False) -> Terraform:
    """The environment's Terraform: its own working directory, backend and provider mirror."""
    s = project.settings
    backend = env.settings.deploy.backend
    return Terraform(
        module_dir=project.path(s.paths.terraform),
        work_dir=project.path(s.paths.build) / "terraform" / env.name,
        binary=s.terraform.binary,
        env=aws.env_vars(),
        child_env=aws.child_env,
        backend=backend_config(backend, region=aws.region, endpoint=aws.endpoint_url if local else None)
        if backend
        else None,
        mirror=find_mirror(s.terraform.plugin_mirror),
        in_place=local,
        timeout=s.terraform.timeout,
    )


class Handoff:
    """The Terraform side of one environment: its variables, plan, apply and outputs."""

    def __init__(
        self, project: Project, env: Environment, aws: AWS, *, local: bool, terraform: Terraform
    ) -> None:
        self.project, self.env, self.aws, self.local = project, env, aws, local
        self.terraform = terraform
        self._initialized = False

    def variables(
        self, ami_id: str, runtime: Mapping[str, str], values: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The module's variables; ``values``: the strategy's own (blue/green: the colors, live
        color and weights). A rolling environment gets exactly the variables it always got."""
        d = self.env.settings.deploy
        out: dict[str, Any] = {"name": f"{self.project.app.name}-{self.env.name}", **self.user_variables()}
        out.update(
            {
                "image_id": ami_id,
                "runtime_env": dict(runtime),
                "runtime_env_file": self.project.app.deb.runtime_env_file,
                "min_healthy_percentage": d.min_healthy_percent,
                "instance_warmup": d.instance_warmup,
                "region": self.aws.region,
            }
        )
        out.update(values or {})
        if self.local:
            out.update(
                {
                    "skip_credentials_validation": True,
                    "skip_requesting_account_id": True,
                    "skip_metadata_api_check": True,
                    "skip_region_validation": True,
                }
            )
        return out

    def user_variables(self) -> dict[str, Any]:
        """``deploy.variables`` with their secret references (``db_password: {env: NAME}``) read."""
        return resolve_secret_refs(self.env.settings.deploy.variables, self.project.root)

    def secrets(self, variables: Mapping[str, Any]) -> list[str]:
        """The values Terraform's output must never show: those of secret-bearing variables."""
        return secret_values(
            {k: v for k, v in variables.items() if k in self.env.settings.deploy.variables}, VARIABLES
        )

    def ensure_backend(self) -> None:
        """The local cloud starts empty: create the state bucket (versioned) the first time."""
        backend = self.env.settings.deploy.backend
        if not (self.local and backend):
            return
        region = backend.region or self.aws.region
        s3 = self.aws.client("s3", region)
        try:
            # a listing under the state's own prefix, which a least-privilege role may make (HeadBucket
            # needs s3:ListBucket with no prefix: examples/iam/deploy.json grants it for the prefix only)
            folder, slash, _ = backend.key.rpartition("/")
            s3.list_objects_v2(Bucket=backend.bucket, Prefix=folder + slash, MaxKeys=1)
            return
        except AWSError as exc:
            if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
        kwargs: dict[str, Any] = {"Bucket": backend.bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
        s3.put_bucket_versioning(Bucket=backend.bucket, VersioningConfiguration={"Status": "Enabled"})

    def init(self) -> None:
        if not self._initialized:
            self.ensure_backend()
            self.terraform.init()
            self._initialized = True

    def plan(
        self,
        ami_id: str,
        runtime: Mapping[str, str],
        values: Mapping[str, Any] | None = None,
        *,
        detail: bool = True,
    ) -> Plan:
        """``detail=False``: a plan only the gate reads (see ``Terraform.plan``)."""
        self.init()
        variables = self.variables(ami_id, runtime, values)
        return self.terraform.plan(variables, secrets=self.secrets(variables), detail=detail)

    def outputs(self) -> dict[str, Any]:
        """What Terraform last applied ({} before the first apply, or when it cannot say)."""
        try:
            self.init()
            return self.terraform.outputs()
        except BakerError as exc:
            log.debug("terraform output: %s", exc.message)
            return {}

    def apply(
        self,
        release: Release,
        records: Records,
        *,
        allow_replace: bool,
        result: dict[str, Any],
        values: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Plan and gate, write the intent, apply; returns Terraform's outputs after the apply.
        ``values``: the strategy's own variables (blue/green's colors and weights)."""
        assert release.ami_id is not None
        applied = self.outputs()
        plan = self.plan(release.ami_id, release.runtime, values)
        try:
            gate(plan, allow_replace=allow_replace, never_served=records.ledger.live() is None)
        except Refused as exc:
            self.terraform.discard(plan)
            exc.details.update(
                {"env": self.env.name, "ami_id": release.ami_id, "previous_ami_id": release.previous_ami_id}
            )
            was = applied_strategy(applied)
            wanted = self.env.settings.deploy.strategy
            if was is None or was == wanted:
                raise
            origin = self.env.origin("deploy", "strategy")
            raise Refused(
                f"switching deploy.strategy from {was} to {wanted} ({origin}) replaces the fleet: "
                f"{exc.message}. README 'Switching strategies' says how to move without downtime",
                details={**exc.details, "strategy_from": was, "strategy_to": wanted},
            ) from None
        records.intent(release)
        log.info("applying: %s", plan_text(plan).splitlines()[0])
        self.terraform.apply(plan)
        outputs = self.terraform.outputs()
        release.asg_name = outputs.get("asg_name")
        release.launch_template_id = outputs.get("launch_template_id")
        version = outputs.get("launch_template_version")
        release.launch_template_version = str(version) if version is not None else None
        records.ledger.write(release)
        result.update(
            {
                "asg_name": release.asg_name,
                "target_group_arn": outputs.get("target_group_arn"),
                "launch_template_id": release.launch_template_id,
                "launch_template_version": release.launch_template_version,
                "plan": plan.summary(),
            }
        )
        return outputs
