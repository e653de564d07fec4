"""The example's IAM roles in the local cloud: README's "Use it on AWS", one role per verb group.

``local up --enforce-iam`` makes, in every account of the project's environments, a role
``baker-<group>`` whose one inline policy is ``examples/iam/<group>.json`` with the example's account
and region (123456789012, us-east-1) replaced by that account's (as README tells users to), then
does the one-time setup of each environment's state bucket and table as ``baker-bootstrap``. Every
``--local`` command then assumes the role of its verb group (``cloud.aws(..., group=)``): bake for
bake, verify, render and the bake of release; deploy for deploy, rollback, pin, retire, status and
the deploy of release and promote; promote for promote's copies and shares; gc for gc.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from baker.aws import AWS, error_code
from baker.errors import AWSError, UsageError

GROUPS = ("bake", "deploy", "promote", "gc", "bootstrap")
EXAMPLE_ACCOUNT = "123456789012"
EXAMPLE_REGION = "us-east-1"
#: what a bootstrap that finds its bucket or table made already is told
ALREADY = {"BucketAlreadyOwnedByYou", "BucketAlreadyExists", "ResourceInUseException", "EntityAlreadyExists"}


def role_name(group: str) -> str:
    return f"baker-{group}"


def role_arn(account: str, group: str) -> str:
    return f"arn:aws:iam::{account}:role/{role_name(group)}"


def policy_for(text: str, account: str, region: str) -> str:
    """The example policy for another account and home region (README: replace those names)."""
    if account == EXAMPLE_ACCOUNT:
        return text
    return (
        text.replace(EXAMPLE_ACCOUNT, account)
        .replace(f'"{EXAMPLE_REGION}"', f'"{region}"')
        .replace(f":{EXAMPLE_REGION}:", f":{region}:")
    )


def policies(folder: Path) -> dict[str, str]:
    """group -> the policy's text, for each verb group's file in ``folder``."""
    found = {g: folder / f"{g}.json" for g in GROUPS}
    missing = [str(p) for p in found.values() if not p.is_file()]
    if missing:
        raise UsageError(f"--enforce-iam needs the example policies: missing {', '.join(missing)}")
    out = {}
    for group, path in found.items():
        text = path.read_text()
        try:
            json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{path}: not valid JSON ({exc})") from exc
        out[group] = text
    return out


def homes(environments: Iterable[Any]) -> dict[str, str]:
    """account -> its home region (the first environment's, by name) of the project's environments."""
    out: dict[str, str] = {}
    for env in sorted(environments, key=lambda e: e.name):
        aws = env.settings.aws
        out.setdefault(aws.account_id or EXAMPLE_ACCOUNT, aws.region)
    return out


def make(admin: Callable[[str, str], AWS], texts: dict[str, str], accounts: dict[str, str]) -> list[str]:
    """Create (or update) the roles in each account through its root ``admin(account, region)``."""
    made = []
    for account, region in sorted(accounts.items()):
        iam = admin(account, region).client("iam")
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        for group, text in texts.items():
            try:
                iam.create_role(RoleName=role_name(group), AssumeRolePolicyDocument=json.dumps(trust))
            except AWSError as exc:
                if error_code(exc) not in ALREADY:
                    raise
            iam.put_role_policy(
                RoleName=role_name(group), PolicyName=group, PolicyDocument=policy_for(text, account, region)
            )
            made.append(role_arn(account, group))
    return made


def bootstrap(as_role: Callable[[str, str], AWS], environments: Iterable[Any], table: str) -> list[str]:
    """README's one-time setup of each environment's state bucket and table, as ``baker-bootstrap``."""
    done: list[str] = []
    for env in environments:
        s = env.settings
        account = s.aws.account_id or EXAMPLE_ACCOUNT
        backend = s.deploy.backend
        if backend is not None and backend.bucket and f"s3://{backend.bucket}" not in done:
            region = backend.region or s.aws.region
            s3 = as_role(account, region).client("s3")
            create: dict[str, Any] = {"Bucket": backend.bucket}
            if region != "us-east-1":
                create["CreateBucketConfiguration"] = {"LocationConstraint": region}
            _create(s3.create_bucket, **create)
            s3.put_bucket_versioning(Bucket=backend.bucket, VersioningConfiguration={"Status": "Enabled"})
            s3.put_public_access_block(
                Bucket=backend.bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
            s3.put_bucket_encryption(
                Bucket=backend.bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
            done.append(f"s3://{backend.bucket}")
        table_id = f"dynamodb {account} {s.aws.region} {table}"
        if table_id in done:
            continue
        ddb = as_role(account, s.aws.region).client("dynamodb")
        _create(
            ddb.create_table,
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
        )
        ddb.get_waiter("table_exists").wait(TableName=table)
        ddb.update_continuous_backups(
            TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
        done.append(table_id)
    return done


def _create(call: Callable[..., Any], **kwargs: Any) -> bool:
    """True when made now, False when it was there already."""
    try:
        call(**kwargs)
    except AWSError as exc:
        if error_code(exc) in ALREADY:
            return False
        raise
    return True
