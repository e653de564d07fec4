"""The test tree itself: pytest collects every level in one run, by basename."""

from __future__ import annotations

import collections
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_files_share_a_basename():
    """Without __init__.py files pytest imports test modules by basename: a second test_x.py in
    another level stops the whole run at collection."""
    names = collections.Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []
