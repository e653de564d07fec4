"""revoke and unrevoke: stop an AMI, and everything made from it, from ever being deployed again.

A CVE in a base image or a release that corrupts data: ``baker revoke --ami ID --reason TEXT`` tags
the AMI, its snapshots, and every copy and child of it with ``baker:revoked`` (when, who, why, and
the AMI whose revocation a copy inherits). The family is found among the app's images in every
account and region of the project's environments (what gc reads too):

- promoted copies: ``baker:promoted-from`` names the AMI (a copy of a copy is found in turn);
- regional copies of the same bake: same account, recipe, build time and promotion source;
- children: app images baked on it as their base (``baker:base-ami``), and their copies.

Every environment's ledger records it (a ``revoke`` release for the history, and the revoked AMIs,
which the automatic rollback passes over). From then on the policy gate (baker/policy.py) refuses
the AMI to deploy, release, promote, pin and ``rollback --to`` (exit 6). Where the account offers
DescribeImageReferences, the instances and launch templates using any of them are listed (also
those outside baker's environments); elsewhere the instances, from baker's own reads.
``unrevoke`` removes the tags and the ledger's records of that revocation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from baker import images, provenance
from baker.aws import AWS
from baker.config import Environment, Project
from baker.errors import UsageError
from baker.gc import Place, bake_key, places
from baker.images import Image
from baker.ledger import Ledger, identity
from baker.provenance import iso, utc_now

log = logging.getLogger("baker")


def family(root: str, found: Sequence[Image]) -> list[Image]:
    """Pure: ``root`` and every copy and child of it among ``found`` (root first, then as found)."""
    by_id = {i.id: i for i in found}
    members = [root]
    queue = [root]
    while queue:
        parent = by_id.get(queue.pop())
        if parent is None:
            continue
        key = bake_key(parent)
        for image in found:
            if image.id in members:
                continue
            source = (image.promoted_from or "").split(" ", 1)[0]
            promoted_to = parent.tags.get(provenance.PROMOTED_TO, "").split()
            copies = image.id in {item.rsplit(":", 1)[-1] for item in promoted_to}
            if (
                source == parent.id
                or copies
                or image.tags.get(provenance.BASE_AMI) == parent.id
                or (key is not None and bake_key(image) == key)
            ):
                members.append(image.id)
                queue.append(image.id)
    return [by_id[m] for m in members if m in by_id]


class Revoke:
    def __init__(
        self,
        project: Project,
        envs: Sequence[Environment],
        aws_for: Callable[[Environment], AWS],
        *,
        clock: Callable[[], Any] = utc_now,
    ) -> None:
        self.project = project
        self.app = project.app.name
        self.envs = list(envs)
        self.aws_for = aws_for
        self.clock = clock
        self._aws: dict[str, AWS] = {}

    def aws(self, env: Environment) -> AWS:
        if env.name not in self._aws:
            self._aws[env.name] = self.aws_for(env)
        return self._aws[env.name]

    def find(self, ami_id: str) -> tuple[list[Image], dict[str, Place]]:
        """The AMI's family and the place of each member: one paginated read of the app's images
        per account and region."""
        images.check_id(ami_id)
        where = places(self.envs, self.aws)

        def look(place: Place) -> list[Image]:
            return images.of_app(place.aws.client("ec2"), self.app, place.region)

        with ThreadPoolExecutor(max_workers=min(8, len(where) or 1)) as pool:
            looks = list(pool.map(look, where))
        home = {i.id: place for place, found in zip(where, looks, strict=True) for i in found}
        every = [i for found in looks for i in found]
        if ami_id not in home:
            raise UsageError(
                f"{ami_id} is not an AMI of {self.app} in any account and region of the environments "
                f"({', '.join(p.name for p in where)})",
                details={"ami_id": ami_id},
            )
        return family(ami_id, every), home

    def references(self, members: Sequence[Image], home: dict[str, Place]) -> dict[str, list[str]]:
        """AMI -> what uses it: DescribeImageReferences where offered, else the instances."""
        out: dict[str, list[str]] = {}
        by_place: dict[str, list[Image]] = {}
        for image in members:
            by_place.setdefault(home[image.id].name, []).append(image)
        for group in by_place.values():
            ec2 = home[group[0].id].aws.client("ec2")
            ids = [i.id for i in group]
            found = images.references(ec2, ids)
            if found is None:
                found = {
                    ami: [f"instance {iid} ({state})" for iid, state in running]
                    for ami, running in images.instances_using(ec2, ids).items()
                }
            out.update({ami: refs for ami, refs in found.items() if refs})
        return out

    def _ledgers(self) -> list[Ledger]:
        """The ledger of every environment that has one (never deployed: nothing to roll back to)."""
        table = self.project.settings.state.table
        found = [Ledger(self.aws(env), table=table, app=self.app, env=env.name) for env in self.envs]
        return [ledger for ledger in found if ledger.table.exists()]

    def run(self, ami_id: str, *, reason: str, dry_run: bool = False) -> dict[str, Any]:
        if not reason.strip():
            raise UsageError("revoke needs a --reason: whoever is refused must learn why")
        members, home = self.find(ami_id)
        at, by = self.clock(), identity()
        marks = [
            {
                "ami_id": image.id,
                "account_id": home[image.id].account_id,
                "region": image.region,
                "version": image.version,
                "relation": "revoked" if image.id == ami_id else "copy or child",
                "already": image.revoked is not None,
            }
            for image in members
        ]
        result: dict[str, Any] = {
            "ami_id": ami_id,
            "reason": reason,
            "by": by,
            "at": iso(at),
            "dry_run": dry_run,
            "revoked": marks,
            "in_use": self.references(members, home),
        }
        if dry_run:
            return result
        for image in members:
            value = provenance.revoked_value(at, by, reason, None if image.id == ami_id else ami_id)
            images.tag(home[image.id].aws.client("ec2"), image, {provenance.REVOKED: value})
            log.info("revoked %s (%s)", image.id, home[image.id].name)
        ids = [image.id for image in members]
        record = {"at": iso(at), "by": by, "reason": reason, "root": ami_id}
        result["ledgers"] = []
        for ledger in self._ledgers():
            ledger.set_revoked(ids, record)
            entry = ledger.new("revoke", ami_id, outcome="done", reason=reason, by=by, revoked_amis=ids)
            ledger.write(entry)
            result["ledgers"].append(ledger.env)
        return result

    def unrevoke(self, ami_id: str, *, dry_run: bool = False) -> dict[str, Any]:
        """Lift the revocation of ``ami_id`` from it and the copies and children that inherited it."""
        members, home = self.find(ami_id)
        lifted = [
            i
            for i in members
            if i.revoked is not None and (i.id == ami_id or i.revoked.get("root") == ami_id)
        ]
        result: dict[str, Any] = {
            "ami_id": ami_id,
            "dry_run": dry_run,
            "unrevoked": [
                {"ami_id": i.id, "account_id": home[i.id].account_id, "region": i.region, "was": i.revoked}
                for i in lifted
            ],
        }
        if dry_run or not lifted:
            return result
        for image in lifted:
            ec2 = home[image.id].aws.client("ec2")
            ec2.delete_tags(Resources=[image.id, *image.snapshots], Tags=[{"Key": provenance.REVOKED}])
        ids = [i.id for i in lifted]
        for ledger in self._ledgers():
            ledger.clear_revoked(ids)
            ledger.write(ledger.new("unrevoke", ami_id, outcome="done", revoked_amis=ids))
        return result
