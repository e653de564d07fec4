"""Every end-to-end story runs under the example's IAM roles (``baker local up --enforce-iam``).

For the length of each story file the session's local cloud evaluates the policies of
``examples/iam`` on every call of baker, Packer and Terraform's AWS provider (each ``--local``
command assumes its verb group's role), and records them. When the file's stories end:

- no call was denied (else the story fails, naming each denied action, resource and role);
- every action a policy granted is in ``tests/e2e/iam-calls.json``, the record of what the stories
  use, per policy, that ``tests/unit/test_iam_examples.py`` holds the policies to and
  ``bench/bench_iam.py`` reports from; ``BAKER_IAM_RECORD=1`` adds new ones to it instead of
  failing;
- the calls are kept in ``.baker/iam-calls/<story>.json`` for the report.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baker.local import cloud
from tests.conftest import REPO

RECORD = Path(__file__).with_name("iam-calls.json")
CALLS = REPO / ".baker" / "iam-calls"


def used(calls: list[dict[str, Any]]) -> dict[str, set[str]]:
    """policy -> the actions it granted in these calls."""
    out: dict[str, set[str]] = {}
    for call in calls:
        for grant in call["grants"]:
            out.setdefault(grant["policy"], set()).add(call["action"])
    return out


def merge(found: dict[str, set[str]]) -> None:
    """Add what a story used to the record (under a lock: xdist workers write it concurrently)."""
    with open(RECORD, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        record = json.loads(fh.read() or "{}")
        for policy, actions in found.items():
            record[policy] = sorted(set(record.get(policy, [])) | actions)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(dict(sorted(record.items())), indent=2) + "\n")


@pytest.fixture(scope="module", autouse=True)
def example_roles(local_cloud: Any, request: pytest.FixtureRequest) -> Iterator[None]:
    project = cloud.IAMSetup(enforce=True, policies=REPO / "examples" / "iam")
    from baker.config import load_project

    repo = load_project(REPO)
    project.environments = [repo.environment(n) for n in repo.environment_names()]
    cloud.up(local_cloud.state_dir, rootfs=False, iam=project)
    try:
        yield
    finally:
        calls = cloud.iam_calls(local_cloud.state_dir)["calls"]
        cloud.up(local_cloud.state_dir, rootfs=False, iam=cloud.IAMSetup(enforce=False))
    CALLS.mkdir(parents=True, exist_ok=True)
    (CALLS / f"{request.module.__name__.rsplit('.', 1)[-1]}.json").write_text(json.dumps(calls, indent=1))
    denied = [
        f"{c['action']} on {', '.join(c['resources'])} as {c['caller']}" for c in calls if not c["allowed"]
    ]
    assert not denied, "AccessDenied under the example roles:\n" + "\n".join(denied)
    found = used(calls)
    if os.environ.get("BAKER_IAM_RECORD"):
        merge(found)
        return
    record = json.loads(RECORD.read_text())
    new = sorted(f"{p}: {a}" for p, actions in found.items() for a in actions - set(record.get(p, [])))
    assert not new, (
        f"actions used but not in {RECORD.relative_to(REPO)} (rerun with BAKER_IAM_RECORD=1 to add them):\n"
        + "\n".join(new)
    )
