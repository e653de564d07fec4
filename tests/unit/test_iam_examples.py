"""examples/iam: least-privilege policies per verb group, and the OIDC trust of a CI runner's role."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import REPO

IAM = REPO / "examples" / "iam"
README = REPO / "README.md"
GROUPS = ("bake", "deploy", "promote", "gc", "bootstrap")
#: what each policy granted in the end-to-end stories run under the example roles (local up
#: --enforce-iam): the calls of baker, Packer and Terraform's AWS provider, recorded by the emulator
RECORD = REPO / "tests" / "e2e" / "iam-calls.json"
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


def granted(name: str) -> set[str]:
    return {a for st in statements(name) for a in actions(st)}


def justified(name: str) -> set[str]:
    """README's actions granted but never called in the local cloud, each with its reason."""
    rows = re.findall(rf"^\| `{name}\.json` \| `([a-z0-9-]+:\w+)` \| .+ \|$", README.read_text(), re.M)
    return set(rows)


@pytest.mark.parametrize("name", GROUPS)
def test_each_verb_group_grants_what_the_stories_called(name):
    called = set(json.loads(RECORD.read_text()).get(name, []))
    assert called, f"{RECORD.name} has no calls of {name}.json"
    assert called <= granted(name), called - granted(name)


@pytest.mark.parametrize("name", GROUPS)
def test_every_action_granted_but_never_called_is_justified_in_the_readme(name):
    called = set(json.loads(RECORD.read_text()).get(name, []))
    unused = granted(name) - called
    assert unused == justified(name), (
        f"never called: {sorted(unused - justified(name))} (remove them or give the reason in README); "
        f"justified but called or not granted: {sorted(justified(name) - unused)}"
    )


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
