"""promote: the same AMI, tested in one environment, into the next. Never rebaked.

The source is the source environment's live healthy release (or ``--ami``, which must have been
healthy there). The policy gate of the target decides first (pin, ``promote_from``,
``require_verified``, ``promotion.min_soak``), then the image settings of both environments must
be equal (else the keys that differ are named). Then, as the target's account and region need:

- same account and region: the very same AMI;
- same account, other region: CopyImage into the target's region;
- other account: the source account shares the AMI and its snapshots (launch permission,
  createVolumePermission), the target account copies it, so the target owns its AMI;
  re-encrypted with the target's key. Tags do not cross accounts: they are set on the copy.

Copies to the target's ``bake.copy_to_regions`` run concurrently with the home copy. The copy gets
``baker:promoted-from`` (source AMI, region, environment) and the source ``baker:promoted-to``;
promoting the same AMI again finds the copy by that tag and copies nothing. Then the target is
deployed (kind ``promote``) through the full health gate, lock and rollback.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from baker import images, provenance, recipe
from baker.aws import AWS
from baker.config import Environment, Project
from baker.deploy import Deploy, Options
from baker.errors import Refused, UsageError
from baker.images import Image
from baker.ledger import Ledger, Release
from baker.policy import Change

log = logging.getLogger("baker")


def promoted_from_value(source: Image, env: str) -> str:
    return f"{source.id} {source.region} {env}"


class Promote:
    def __init__(
        self,
        project: Project,
        source_env: Environment,
        target_env: Environment,
        source_aws: AWS,
        target_aws: AWS,
        *,
        local: bool = False,
        deploy: Deploy | None = None,
        build_host: Any = None,
    ) -> None:
        self.project = project
        self.src, self.dst = source_env, target_env
        self.src_aws, self.dst_aws = source_aws, target_aws
        self.local = local
        #: the local cloud's build host: a copy gets its source's content, so it boots the same
        self.build_host = build_host
        self.table = project.settings.state.table
        self.src_ledger = Ledger(source_aws, table=self.table, app=project.app.name, env=source_env.name)
        self.deploy = deploy or Deploy(project, target_env, target_aws, local=local)

    # -- what to promote

    def source_release(self, ami_id: str | None) -> Release:
        if ami_id is not None:
            images.check_id(ami_id)
            found = self.src_ledger.healthy_on(ami_id)
            if found is None:
                raise Refused(
                    f"refused by policy [promotion_source]: {ami_id} was never healthy in {self.src.name}; "
                    f"promote takes an AMI that ran healthy there (see 'baker history -e {self.src.name}')",
                    details={"outcome": "refused", "rule": "promotion_source", "ami_id": ami_id},
                )
            return found
        live = self.src_ledger.live()
        if live is None or live.ami_id is None:
            raise Refused(
                f"refused by policy [promotion_source]: {self.src.name} has no healthy release to promote",
                details={"outcome": "refused", "rule": "promotion_source", "ami_id": None},
            )
        return live

    def check_image_settings(self, source: Image) -> None:
        differ = recipe.differences(recipe.image_settings(self.src), recipe.image_settings(self.dst))
        if not differ:
            return
        raise Refused(
            f"refused by policy [image_settings]: {source.id} was baked with {self.src.name}'s image "
            f"settings, which differ from {self.dst.name}'s in {', '.join(differ)} "
            f"({self.dst.origin('bake')}); an AMI is promoted unchanged, so the settings must match",
            details={"outcome": "refused", "rule": "image_settings", "keys": differ, "ami_id": source.id},
        )

    # -- the copies

    def plan_copies(self, source: Image) -> list[str]:
        """Regions of the target that need their own copy (the home region first)."""
        home = self.dst.settings.aws.region
        regions = [home, *[r for r in self.dst.settings.bake.copy_to_regions if r != home]]
        same_account = self.src.settings.aws.account_id == self.dst.settings.aws.account_id
        return [r for r in regions if not (same_account and r == source.region)]

    def _copy_tags(self, source: Image, value: str) -> dict[str, str]:
        tags = {k: v for k, v in source.tags.items() if k.startswith("baker:")}
        tags.pop(provenance.PROMOTED_TO, None)
        tags[provenance.PROMOTED_FROM] = value
        return tags

    def _copy(self, source: Image, region: str, value: str) -> tuple[Image, bool]:
        """The target's copy in ``region``: the existing one (found by its tag) or a new one."""
        ec2 = self.dst_aws.client("ec2", region)
        found = images.find_tagged(ec2, region, provenance.PROMOTED_FROM, value)
        if found:
            log.info("%s already has %s's copy in %s: %s", self.dst.name, source.id, region, found[0].id)
            return found[0], False
        bake = self.dst.settings.bake
        log.info(
            "copying %s (%s) into %s of %s",
            source.id,
            source.region,
            region,
            self.dst.settings.aws.account_id,
        )
        copy = images.copy(
            ec2,
            source,
            region=region,
            name=f"{source.name or source.id}-{self.dst.name}"[:128],
            encrypted=bake.encrypt_boot or source.encrypted,
            kms_key_id=bake.kms_key_id if region == self.dst.settings.aws.region else None,
            tags=self._copy_tags(source, value),
            description=f"{self.project.app.name} {source.version}: {source.id} from {self.src.name}",
        )
        if self.build_host is not None and self.build_host.image_root(source.id) is not None:
            self.build_host.copy_image(source.id, copy.id)
        return copy, True

    def _mark_source(self, source: Image, copies: dict[str, str]) -> None:
        ec2 = self.src_aws.client("ec2", source.region)
        have = source.tags.get(provenance.PROMOTED_TO, "")
        items = [i for i in have.split() if i]
        for region, ami in copies.items():
            item = f"{self.dst.name}:{region}:{ami}"
            if item not in items:
                items.append(item)
        value = " ".join(items)
        while len(value) > provenance.MAX_VALUE and items:  # the newest promotions are kept
            items.pop(0)
            value = " ".join(items)
        if value != have:
            images.tag(ec2, source, {provenance.PROMOTED_TO: value})

    # -- the whole promotion

    def run(
        self,
        *,
        ami_id: str | None = None,
        deploy: bool = True,
        dry_run: bool = False,
        options: Options | None = None,
    ) -> dict[str, Any]:
        if self.src.name == self.dst.name:
            raise UsageError(f"promote --from and --to are both {self.src.name}")
        self.deploy.gate.check_pin(Change(verb="promote", image=None))
        release = self.source_release(ami_id)
        assert release.ami_id is not None
        src_region = self.src.settings.aws.region
        source = images.require(self.src_aws.client("ec2"), release.ami_id, src_region)
        self.deploy.gate.check(
            Change(verb="promote", image=source, source_env=self.src.name, source_release=release)
        )
        self.check_image_settings(source)
        regions = self.plan_copies(source)
        src_account, dst_account = self.src.settings.aws.account_id, self.dst.settings.aws.account_id
        cross_account = src_account != dst_account
        value = promoted_from_value(source, self.src.name)
        result: dict[str, Any] = {
            "env": self.dst.name,
            "from": self.src.name,
            "source_ami_id": source.id,
            "source_release_id": release.id,
            "version": source.version,
            "git_sha": source.git_sha,
            "copies": {},
            "ami_id": None,
            "previous_ami_id": None,
            "outcome": None,
        }
        if dry_run:
            actions = []
            if cross_account:
                actions.append(
                    f"share {source.id} and its snapshots {', '.join(source.snapshots) or '-'} "
                    f"with {dst_account}"
                )
            for region in regions:
                enc = self.dst.settings.bake.kms_key_id if region == self.dst.settings.aws.region else None
                actions.append(
                    f"copy {source.id} ({src_region}) into {dst_account} {region}"
                    f"{f' encrypted with {enc}' if enc else ''}, unless a copy tagged "
                    f"{provenance.PROMOTED_FROM}={value!r} exists; tag it with the source's baker:* tags"
                )
            actions.append(f"tag {source.id} {provenance.PROMOTED_TO} += {self.dst.name}")
            if not regions:
                result["copies"] = {self.dst.settings.aws.region: source.id}
            result.update(outcome="planned", actions=actions, deploy=deploy)
            if deploy:
                plan = self.deploy.plan(source.id, self.dst.settings.runtime.env)
                self.deploy.terraform.discard(plan)
                from baker.deploy import plan_text

                result["plan_text"] = plan_text(plan) + (
                    f"\n  (planned with {source.id} standing in for the copy)" if regions else ""
                )
                result["plan"] = plan.summary()
            return result

        if cross_account:
            shared = images.share(self.src_aws.client("ec2", src_region), source, [dst_account])
            result["shared_with"] = shared
        copies: dict[str, str] = {}
        made: list[str] = []
        if regions:
            with ThreadPoolExecutor(max_workers=min(8, len(regions))) as pool:
                futures = {region: pool.submit(self._copy, source, region, value) for region in regions}
                for region, future in futures.items():
                    image, new = future.result()
                    copies[region] = image.id
                    if new:
                        made.append(region)
        home = self.dst.settings.aws.region
        if home not in copies:
            copies[home] = source.id
        result["copies"] = copies
        result["copied"] = made
        if made or regions:
            self._mark_source(source, {r: copies[r] for r in regions})
        result["ami_id"] = copies[home]
        if not deploy:
            result["outcome"] = "copied"
            return result
        deployed = self.deploy.run(
            copies[home],
            kind="promote",
            options=options,
            source_env=self.src.name,
            source_release=release,
            promoted_from={"env": self.src.name, "ami_id": source.id, "region": src_region},
        )
        return {**deployed, **{k: v for k, v in result.items() if k not in deployed or k == "ami_id"}}
