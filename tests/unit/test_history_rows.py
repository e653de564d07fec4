"""history's rows and their text: pure."""

from __future__ import annotations

from baker.cli.history_cmd import render, short_time
from baker.cli.table import table
from baker.history import entry
from baker.ledger import Release


def release(**fields) -> Release:
    base = {
        "id": "r1",
        "kind": "deploy",
        "app": "a",
        "env": "dev",
        "ami_id": "ami-00000001",
        "at": "t",
        "by": "me",
    }
    return Release(**{**base, **fields})


def test_a_row_counts_the_runtime_keys_and_leaves_their_values_out():
    row = entry(release(runtime={"SECRET_URL": "x", "B": "y"}, outcome="healthy"))
    assert row["runtime_keys"] == 2
    assert "x" not in str(row.values())
    assert {"kind", "ami_id", "version", "outcome", "at", "by", "previous_ami_id"} <= set(row)


def test_short_time_drops_the_milliseconds():
    assert short_time("2026-12-01T03:04:05.678Z") == "2026-12-01 03:04:05Z"
    assert short_time(None) is None


def test_text_is_a_table_with_the_pin_reason_and_the_promotion_source():
    rows = [
        entry(release(kind="pin", pin_reason="incident 7", at="2026-12-01T03:00:00.000Z")),
        entry(
            release(
                kind="promote",
                promoted_from={"env": "dev", "ami_id": "ami-0000000a", "region": "us-east-1"},
                at="2026-12-01T02:00:00.000Z",
            )
        ),
    ]
    text = render({"env": "staging", "releases": rows})
    lines = text.splitlines()
    assert lines[0] == "staging: 2 releases, newest first"
    assert lines[1].split() == ["AT", "KIND", "AMI", "VERSION", "OUTCOME", "PREVIOUS", "BY", "NOTE"]
    assert "incident 7" in lines[2] and "from dev ami-0000000a" in lines[3]
    assert render({"env": "x", "releases": []}) == "x: no releases recorded"


def test_table_pads_columns_and_shows_none_as_a_dash():
    assert table(["A", "BB"], [["xyz", None], [None, True]]).splitlines() == ["A    BB", "xyz  -", "-    yes"]


def test_a_release_of_a_layered_image_names_its_base_in_the_row_and_the_text():
    row = entry(release(base_ami_id="ami-0000000b", reason="canary"))
    assert row["base_ami_id"] == "ami-0000000b"
    assert "on base ami-0000000b; canary" in render({"env": "dev", "releases": [row]})
    assert entry(release())["base_ami_id"] is None
