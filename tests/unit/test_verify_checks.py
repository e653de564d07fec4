"""verify's pure parts: judging a check's output, the console's host keys, the tag."""

from __future__ import annotations

from datetime import UTC, datetime

from baker.config import SmokeCheck
from baker.verify import checks_digest, console_host_keys, judge, verified_tag

CONSOLE = """[   12.3] cloud-init[501]: Cloud-init v. 22.4.2 running 'modules:final'
-----BEGIN SSH HOST KEY KEYS-----
ecdsa-sha2-nistp256 AAAAE2Vj root@ip-10-0-0-5
ssh-ed25519 AAAAC3Nz root@ip-10-0-0-5
-----END SSH HOST KEY KEYS-----
"""


def test_host_keys_come_from_cloud_inits_console_block() -> None:
    assert console_host_keys(CONSOLE) == ["ssh-ed25519 AAAAC3Nz"]
    assert console_host_keys("no keys printed yet") == []


def test_command_and_http_checks_are_judged_as_a_user_would() -> None:
    command = SmokeCheck(name="active", command="systemctl is-active hello-web")
    assert judge(command, 0, "active\n") == (True, "active")
    assert judge(command, 3, "inactive\n") == (False, "inactive")
    http = SmokeCheck(name="healthz", http="http://127.0.0.1:8080/healthz", expect="ok")
    assert judge(http, 0, "200\nok\n") == (True, "HTTP 200: ok")
    assert judge(http, 0, "503\nunhealthy\n") == (False, "HTTP 503: unhealthy")
    ok, shown = judge(http, 0, "200\nsomething else\n")
    assert not ok and "expected 'ok'" in shown
    assert len(judge(command, 1, "x" * 5000)[1]) == 400


def test_the_tag_says_when_and_which_checks() -> None:
    checks = [SmokeCheck(name="a", command="true")]
    assert checks_digest(checks) == checks_digest([SmokeCheck(name="a", command="true")])
    assert checks_digest(checks) != checks_digest([SmokeCheck(name="a", command="false")])
    tag = verified_tag(checks, datetime(2026, 12, 1, 17, 0, tzinfo=UTC))
    assert tag == f"2026-12-01T17:00:00Z checks:{checks_digest(checks)}"
