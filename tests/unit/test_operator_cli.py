"""The operator views' command lines: registered, and bad input stops them before AWS is asked."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from baker.cli import main


def invoke(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_status_history_and_gc_are_commands():
    code, out, _ = invoke("--help")
    assert code == 0
    for name in ("status", "history", "gc"):
        assert f"  {name} " in out


@pytest.mark.parametrize(
    "args",
    [
        ("gc", "--keep", "0"),
        ("gc", "--older-than", "-1"),
        ("history", "-e", "dev", "--limit", "0"),
        ("history",),
    ],
)
def test_bad_input_is_exit_2(args):
    code, out, _ = invoke("--output", "json", *args)
    assert code == 2 and json.loads(out)["exit_code"] == 2


def test_an_unknown_environment_is_exit_2_naming_it(repo):
    for args in (("status", "-e", "nosuch"), ("history", "-e", "nosuch"), ("gc", "-e", "nosuch")):
        code, out, _ = invoke("--project", str(repo), "--output", "json", *args)
        assert code == 2 and "nosuch" in json.loads(out)["error"], args
