"""How the local cloud decides an assumed role's call: the example policies' actions, resources and
condition keys, evaluated as IAM does (baker.local.moto.policy_evaluation), and the roles made from
them for another account (baker.local.roles)."""

from __future__ import annotations

import json

import pytest

from baker.local.moto.policy_evaluation import condition_matches, decide
from baker.local.roles import policy_for
from tests.conftest import REPO

IAM = REPO / "examples" / "iam"


def policies(*names: str) -> dict[str, dict]:
    return {n: json.loads((IAM / f"{n}.json").read_text()) for n in names}


def ctx(region: str = "us-east-1") -> dict[str, list[str]]:
    return {"aws:RequestedRegion": [region]}


def test_an_action_the_policy_grants_in_its_region_is_allowed_and_says_by_which_statement():
    allowed, grants = decide(policies("deploy"), "ec2:DescribeImages", ["*"], lambda r: ctx())
    assert allowed and grants == [{"resource": "*", "policy": "deploy", "sid": "ReadTheFleet"}]


def test_another_region_or_an_action_not_granted_is_denied():
    assert not decide(policies("deploy"), "ec2:DescribeImages", ["*"], lambda r: ctx("eu-west-1"))[0]
    assert not decide(policies("deploy"), "ec2:DeregisterImage", ["*"], lambda r: ctx())[0]


def test_a_destructive_call_needs_the_apps_tag_on_every_resource_it_names():
    arns = ["arn:aws:ec2:us-east-1::image/ami-1", "arn:aws:ec2:us-east-1::image/ami-2"]
    tags = {arns[0]: "hello-web", arns[1]: "other-app"}

    def context(resource: str) -> dict[str, list[str]]:
        return {"aws:RequestedRegion": ["us-east-1"], "ec2:ResourceTag/baker:app": [tags[resource]]}

    assert decide(policies("gc"), "ec2:DeregisterImage", arns[:1], context)[0]
    allowed, grants = decide(policies("gc"), "ec2:DeregisterImage", arns, context)
    assert not allowed and [g["resource"] for g in grants] == arns[:1]
    untagged = decide(policies("gc"), "ec2:DeregisterImage", arns[:1], lambda r: ctx())
    assert not untagged[0], "a resource without the tag does not match StringEquals"


def test_state_objects_only_under_the_apps_prefix_and_listing_only_there():
    p = policies("deploy")
    own = "arn:aws:s3:::baker-tfstate-123456789012/hello-web/dev.tfstate"
    other = "arn:aws:s3:::baker-tfstate-123456789012/shop/dev.tfstate"
    assert decide(p, "s3:GetObject", [own], lambda r: ctx())[0]
    assert not decide(p, "s3:GetObject", [other], lambda r: ctx())[0]
    bucket = "arn:aws:s3:::baker-tfstate-123456789012"
    listing = {"aws:RequestedRegion": ["us-east-1"], "s3:prefix": ["hello-web/"]}
    assert decide(p, "s3:ListBucket", [bucket], lambda r: listing)[0]
    assert not decide(p, "s3:ListBucket", [bucket], lambda r: ctx())[0], "no prefix: no match"


@pytest.mark.parametrize(
    ("operator", "expected", "actual", "matches"),
    [
        ("StringEquals", ["a", "b"], ["b"], True),
        ("StringEquals", "a", None, False),
        ("StringLike", "ec2.*.amazonaws.com", ["ec2.us-west-2.amazonaws.com"], True),
        ("StringLike", "hello-web/*", ["hello-web"], False),
        ("StringNotEquals", "a", ["b"], True),
        ("StringNotEquals", "a", None, True),
        ("StringEqualsIfExists", "a", None, True),
    ],
)
def test_condition_operators(operator, expected, actual, matches):
    context = {} if actual is None else {"k": actual}
    assert condition_matches(operator, "k", expected, context) is matches


def test_an_operator_the_local_cloud_cannot_evaluate_is_an_error_not_an_allow():
    with pytest.raises(ValueError, match="NumericLessThan"):
        condition_matches("NumericLessThan", "k", "1", {"k": ["0"]})


def test_the_roles_of_another_account_get_its_account_and_home_region():
    text = policy_for((IAM / "deploy.json").read_text(), "210987654321", "us-west-2")
    assert "123456789012" not in text and "us-east-1" not in text
    assert "arn:aws:s3:::baker-tfstate-210987654321" in text
    assert "arn:aws:dynamodb:us-west-2:210987654321:table/baker-state" in text
    assert policy_for("x 123456789012 us-east-1", "123456789012", "us-east-1") == "x 123456789012 us-east-1"
