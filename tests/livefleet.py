"""Images with content for live instances, made without Packer (the build host's session, files
written straight into its overlay, committed under an AMI id the emulator issued).

The probe app is a real systemd unit (python3's http.server) that reads its runtime environment
file as the baked app does (``EnvironmentFile=-/etc/probe/runtime.env``): a cloud-config written
by user data can point it at a directory without ``healthz``, a real defect with no knob set.
"""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Callable
from typing import Any

PROBE_UNIT = """[Unit]
Description=probe app of baker's live instance tests
After=network.target cloud-config.service

[Service]
Environment=PROBE_PORT=8080 PROBE_DIR=/srv/probe
EnvironmentFile=-/etc/probe/runtime.env
ExecStart=/usr/bin/python3 -m http.server ${PROBE_PORT} --bind 127.0.0.1 --directory ${PROBE_DIR}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


def bake_probe(local_cloud: Any, version: str, *, healthy: bool = True) -> str:
    """An AMI (issued by the emulator) whose content is the probe app at ``version``."""
    from baker.local.moto_ext import SOURCE_AMI_NAME

    ec2 = local_cloud.client("ec2")
    source = ec2.describe_images(Filters=[{"Name": "name", "Values": [SOURCE_AMI_NAME]}])["Images"][0]
    seed = ec2.run_instances(ImageId=source["ImageId"], MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=seed, Name=f"probe-{version}-{time.time_ns()}")["ImageId"]
    ec2.terminate_instances(InstanceIds=[seed])
    host = local_cloud.build_host
    with host.session() as sess:
        root = sess.root
        (root / "srv/probe").mkdir(parents=True)
        (root / "srv/probe/version").write_text(f"{version}\n")
        if healthy:
            (root / "srv/probe/healthz").write_text("ok\n")
        (root / "srv/broken").mkdir(parents=True)
        (root / "srv/broken/version").write_text(f"{version}\n")
        (root / "etc/systemd/system/probe.service").write_text(PROBE_UNIT)
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "probe.service").symlink_to("/etc/systemd/system/probe.service")
        host.commit(sess, ami)
    return ami


def runtime_env_user_data(text: str, package: str = "probe") -> str:
    """The cloud-config the Terraform module sends: write_files of the app's runtime.env (base64)."""
    encoded = base64.b64encode(text.encode()).decode()
    return (
        "#cloud-config\nwrite_files:\n"
        f"  - path: /etc/{package}/runtime.env\n    encoding: b64\n    content: {encoded}\n"
        "    permissions: '0644'\n"
    )


def in_instance(pid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command inside a live instance's container (its namespaces, its systemd's view)."""
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--", *argv],
        capture_output=True,
        text=True,
        timeout=30,
    )


def wait_for(what: str, check: Callable[[], Any], deadline: float = 90) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.3)
