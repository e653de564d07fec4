"""Pure parts of the live instances: the container's argv, the NoCloud seed, the health state machine."""

from __future__ import annotations

import yaml

from baker.local import health, instances


def test_the_container_has_only_loopback_and_registers_nowhere() -> None:
    argv = instances.nspawn_argv("i-0abc", instances.Path("/s/instances/i-0abc/merged"))
    assert argv[0] == "systemd-nspawn" and argv[-2:] == ["-D", "/s/instances/i-0abc/merged"]
    for flag in ("--boot", "--register=no", "--keep-unit", "--private-network", "--machine=i-0abc"):
        assert flag in argv


def test_meta_data_is_what_the_metadata_service_would_say() -> None:
    key = "ssh-ed25519 AAAA k"
    data = yaml.safe_load(instances.meta_data("i-1", "ip-10-0-0-5", [key]))
    assert data == {"instance-id": "i-1", "local-hostname": "ip-10-0-0-5", "public-keys": [key]}
    assert "public-keys" not in yaml.safe_load(instances.meta_data("i-1", "h", []))
    assert instances.hostname_for("10.0.1.7", "i-1") == "ip-10-0-1-7"
    assert instances.hostname_for(None, "i-1") == "i-1"


def test_matchers_as_an_alb_reads_them() -> None:
    assert health.matches(200, "200") and not health.matches(404, "200")
    assert health.matches(302, "200,302") and health.matches(299, "200-299")
    assert not health.matches(300, "200-299")


def test_thresholds_move_a_target_between_states() -> None:
    check = health.Check(healthy_threshold=2, unhealthy_threshold=3)
    th = health.TargetHealth()
    assert th.state == "initial"
    th.record(True, "", "", check, 1)
    assert th.state == "initial"
    th.record(True, "", "", check, 2)
    assert (th.state, th.reason) == ("healthy", None)
    for t in (3, 4):
        th.record(False, "Target.Timeout", "Request timed out", check, t)
    assert th.state == "healthy", "two failures are below the threshold of three"
    th.record(False, "Target.Timeout", "Request timed out", check, 5)
    assert (th.state, th.reason) == ("unhealthy", "Target.Timeout")
    th.record(True, "", "", check, 6)
    th.record(False, "Target.ResponseCodeMismatch", "codes: [500]", check, 7)
    assert th.state == "unhealthy" and th.passes == 0 and th.reason == "Target.ResponseCodeMismatch"
