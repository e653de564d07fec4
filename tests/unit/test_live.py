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


def test_local_status_says_what_is_live_what_is_a_record_and_where_to_curl() -> None:
    from baker.cli.local_cmd import _render_status

    text = _render_status(
        {
            "running": True, "state_dir": "/s", "netns": "baker-local", "endpoint": "http://127.0.0.1:5000",
            "emulator_pid": 1, "emulator_rss_mib": 50, "build_host": None,
            "images": [{"ami_id": "ami-2", "account": "1", "region": "r", "name": "m", "health": None}],
            "instances": [
                {"instance_id": "i-1", "region": "r", "ami_id": "ami-1", "state": "running",
                 "health": "healthy", "live": True, "container_pid": 5, "rss_mib": 67},
                {"instance_id": "i-2", "region": "r", "ami_id": "ami-2", "state": "running",
                 "health": "healthy", "live": False, "note": "record only: no content"},
            ],
            "load_balancers": [{"load_balancer": "lb", "dns_name": "lb-1.elb.amazonaws.com",
                                "listener_arn": "a", "url": "http://127.0.0.1:80",
                                "healthy_targets": ["i-1"]}],
        }
    )  # fmt: skip
    assert "(1 live)" in text and "live, container pid 5, 67 MiB" in text and "record only" in text
    assert "(no content here: its instances are records)" in text
    assert "lb-1.elb.amazonaws.com  http://127.0.0.1:80" in text
    assert "ip netns exec baker-local curl" in text
