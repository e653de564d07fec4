"""examples/iam: least-privilege policies per verb group, and the OIDC trust of a CI runner's role."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import REPO

IAM = REPO / "examples" / "iam"
GROUPS = ("bake", "deploy", "promote", "gc", "revoke")
#: what each verb group must be allowed, read off what baker (and the tools it runs) calls
NEEDS = {
    "bake": [
        "ec2:DescribeImages",
        "ec2:RunInstances",
        "ec2:CreateImage",
        "ec2:CreateTags",
        "ec2:DescribeInstances",
        "ec2:TerminateInstances",
        "ec2:CopyImage",
        "ec2:ModifyImageAttribute",
    ],
    "deploy": [
        "s3:GetObject",
        "s3:PutObject",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "ec2:CreateLaunchTemplateVersion",
        "autoscaling:StartInstanceRefresh",
        "autoscaling:DescribeInstanceRefreshes",
        "elasticloadbalancing:DescribeTargetHealth",
    ],
    "promote": ["ec2:CopyImage", "ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute", "dynamodb:Query"],
    "gc": [
        "ec2:DeregisterImage",
        "ec2:DeleteSnapshot",
        "autoscaling:DescribeAutoScalingGroups",
        "ec2:EnableImageDeprecation",
        "ec2:DisableImage",
        "ec2:EnableImage",
        "ec2:EnableImageDeregistrationProtection",
        "ec2:DisableImageDeregistrationProtection",
        "ec2:DescribeImageReferences",
    ],
    "revoke": ["ec2:DescribeImages", "ec2:CreateTags", "ec2:DeleteTags", "dynamodb:PutItem"],
}
DESTRUCTIVE = re.compile(r":(Delete|Deregister|Terminate|Stop)")


def policy(name: str) -> dict:
    return json.loads((IAM / f"{name}.json").read_text())


def statements(name: str) -> list[dict]:
    return policy(name)["Statement"]


def actions(st: dict) -> list[str]:
    return [st["Action"]] if isinstance(st["Action"], str) else st["Action"]


@pytest.mark.parametrize("name", [p.stem for p in sorted(IAM.glob("*.json"))])
def test_every_policy_is_valid_json_with_named_statements(name):
    data = policy(name)
    assert data["Version"] == "2012-10-17"
    sids = [st["Sid"] for st in data["Statement"]]
    assert len(sids) == len(set(sids)) and all(re.fullmatch(r"[A-Za-z0-9]+", s) for s in sids)
    for st in data["Statement"]:
        assert st["Effect"] == "Allow"
        for action in actions(st):
            assert re.fullmatch(r"[a-z0-9-]+:[A-Z][A-Za-z]+", action), f"{name}: {action} (no wildcards)"


@pytest.mark.parametrize("name", GROUPS)
def test_each_verb_group_has_what_it_calls(name):
    allowed = {a for st in statements(name) for a in actions(st)}
    assert set(NEEDS[name]) <= allowed, set(NEEDS[name]) - allowed


@pytest.mark.parametrize("name", GROUPS)
def test_destructive_ec2_actions_touch_only_this_apps_resources(name):
    for st in statements(name):
        ec2_destructive = [a for a in actions(st) if a.startswith("ec2:") and DESTRUCTIVE.search(a)]
        ec2_destructive = [
            a for a in ec2_destructive if a not in ("ec2:DeleteKeyPair", "ec2:DeleteSecurityGroup")
        ]
        ec2_destructive = [a for a in ec2_destructive if "LaunchTemplate" not in a]
        if ec2_destructive:
            tag = st.get("Condition", {}).get("StringEquals", {}).get("ec2:ResourceTag/baker:app")
            assert tag, f"{name}: {st['Sid']} deletes without a baker:app condition"


def test_state_is_scoped_to_the_bucket_prefix_and_the_table():
    for st in statements("deploy"):
        if any(a.startswith(("s3:", "dynamodb:")) for a in actions(st)):
            assert st["Resource"] != "*", st["Sid"]


def test_ci_roles_trust_only_oidc_tokens_of_one_repository():
    for name in ("github-oidc-trust", "gitlab-oidc-trust"):
        (st,) = statements(name)
        assert st["Action"] == "sts:AssumeRoleWithWebIdentity"
        conditions = st["Condition"]["StringEquals"]
        assert any(k.endswith(":aud") and v == "sts.amazonaws.com" for k, v in conditions.items())
        assert any(k.endswith(":sub") and "*" not in v for k, v in conditions.items()), name


def test_the_readme_names_every_policy():
    readme = (REPO / "README.md").read_text()
    for path in IAM.glob("*.json"):
        assert f"examples/iam/{path.name}" in readme, path.name
