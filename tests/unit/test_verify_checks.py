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
    assert tag == f"2026-12-01T17:00:00Z checks={checks_digest(checks)}"
    from baker import provenance

    assert provenance.parse_verified(tag) is not None, "the policy gate reads it back"


def _private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return raw.decode()


class _Waiter:
    def wait(self, **kwargs: object) -> None:
        pass


class _EC2:
    """A stand-in EC2 client that records what verify asked (only for the clean-up on Ctrl-C)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str):
        answers = {
            "describe_images": {"Images": [{"ImageId": "ami-0123456789abcdef0"}]},
            "create_key_pair": {"KeyMaterial": _private_key()},
            "describe_vpcs": {"Vpcs": [{"VpcId": "vpc-1"}]},
            "create_security_group": {"GroupId": "sg-1"},
            "run_instances": {"Instances": [{"InstanceId": "i-1"}]},
            "describe_instances": {"Reservations": [{"Instances": [{"InstanceId": "i-1"}]}]},
        }

        def call(*args: object, **kwargs: object) -> object:
            self.calls.append(name)
            return _Waiter() if name == "get_waiter" else answers.get(name, {})

        return call


class _AWS:
    region = "us-east-1"

    def __init__(self) -> None:
        self.ec2 = _EC2()

    def client(self, service: str) -> _EC2:
        return self.ec2


class _Interrupting:
    def host_keys(self, instance: dict) -> list[str] | None:
        raise KeyboardInterrupt

    def connect(self, instance: dict, port: int, timeout: float) -> None:
        raise AssertionError("never reached")


def test_ctrl_c_still_removes_the_instance_key_pair_and_security_group(tmp_path) -> None:
    import pytest

    from baker.config import load_project
    from baker.errors import Interrupted
    from baker.verify import Verify
    from tests.conftest import copy_project

    project = load_project(copy_project(tmp_path, "environments"))
    aws = _AWS()
    stage = Verify(project, project.environment("dev"), aws, reach=_Interrupting())  # type: ignore[arg-type]
    with pytest.raises(Interrupted) as caught:
        stage.run("ami-0123456789abcdef0")
    assert caught.value.exit_code == 130
    calls = aws.ec2.calls
    assert calls.index("terminate_instances") > calls.index("run_instances")
    assert {"delete_security_group", "delete_key_pair"} <= set(calls)
    assert "create_tags" not in calls
