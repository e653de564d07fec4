"""Least privilege, measured: per example IAM policy, the calls the stories made under it.

The end-to-end stories run under the example roles (``local up --enforce-iam``, see
tests/e2e/conftest.py) and keep every evaluated call in ``.baker/iam-calls/<story>.json``. This
prints, per policy of ``examples/iam``: the calls it allowed, the distinct actions used, the actions
it grants, and those granted but never used in any story (``tests/e2e/iam-calls.json``, the
checked-in record), each with README's reason for keeping it; and the AccessDenied count.

Run after the stories: ``python -m pytest tests/e2e -n 2 --dist loadfile; python bench/bench_iam.py``
(or name the call files: ``python bench/bench_iam.py .baker/iam-calls/*.json``).
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IAM = REPO / "examples" / "iam"
RECORD = REPO / "tests" / "e2e" / "iam-calls.json"
POLICIES = ("bake", "deploy", "promote", "gc", "bootstrap")


def granted(policy: str) -> set[str]:
    doc = json.loads((IAM / f"{policy}.json").read_text())
    out: set[str] = set()
    for st in doc["Statement"]:
        out |= {st["Action"]} if isinstance(st["Action"], str) else set(st["Action"])
    return out


def reasons() -> dict[tuple[str, str], str]:
    """README's table of actions granted but not called in the local cloud: (policy, action) -> why."""
    out = {}
    for line in (REPO / "README.md").read_text().splitlines():
        found = re.fullmatch(r"\| `(\w+)\.json` \| `([a-z0-9-]+:\w+)` \| (.+) \|", line.strip())
        if found:
            out[(found.group(1), found.group(2))] = found.group(3)
    return out


def main(paths: list[str]) -> int:
    files = [Path(p) for p in paths] or sorted((REPO / ".baker" / "iam-calls").glob("*.json"))
    calls = [c for f in files for c in json.loads(f.read_text())]
    record = json.loads(RECORD.read_text())
    why = reasons()
    made: Counter[str] = Counter()
    used: dict[str, set[str]] = {}
    for call in calls:
        for grant in call["grants"]:
            made[grant["policy"]] += 1
            used.setdefault(grant["policy"], set()).add(call["action"])
    print(f"calls from {', '.join(f.name for f in files) or 'no story run (.baker/iam-calls is empty)'}")
    print(f"{'policy':<10} {'calls':>6} {'used':>5} {'granted':>8} {'never used':>11}")
    for policy in POLICIES:
        allowed = granted(policy)
        unused = sorted(allowed - set(record.get(policy, [])))
        n_used = len(used.get(policy, ()))
        print(f"{policy:<10} {made[policy]:>6} {n_used:>5} {len(allowed):>8} {len(unused):>11}")
        for action in unused:
            print(f"    {action}: {why.get((policy, action), 'NOT JUSTIFIED in README: remove it')}")
    denied = [c for c in calls if not c["allowed"]]
    print(f"AccessDenied: {len(denied)} of {len(calls)} calls")
    for c in denied:
        print(f"    {c['action']} on {', '.join(c['resources'])} as {c['caller']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
