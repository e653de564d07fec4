"""Images with content for live instances, made without Packer (the build host's session, files
written straight into its overlay, committed under an AMI id the emulator issued).

The probe app is a real systemd unit (python3's http.server) that reads its runtime environment
file as the baked app does (``EnvironmentFile=-/etc/probe/runtime.env``): a cloud-config written
by user data can point it at a directory without ``healthz``, a real defect with no knob set.
``bake_hello`` makes an image of the example app itself (examples/hello-web, its unit reading the
runtime environment file as the .deb's does): its runtime settings make real defects too
(``HELLO_UNHEALTHY``, ``HELLO_BROKEN_PATHS``). ``Users`` is a client sending user requests
through a load balancer's listener; ``listener_port`` finds where the local cloud serves one.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import wait_for  # noqa: F401  (the live instance tests import it from here)

HELLO_APP = Path(__file__).resolve().parents[1] / "examples" / "hello-web" / "hello_web.py"

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


HELLO_UNIT = """[Unit]
Description=hello-web (the example app) in baker's live instance tests
After=network.target cloud-config.service

[Service]
Environment=HELLO_BIND=127.0.0.1 HELLO_PORT=8080
EnvironmentFile=-/etc/hello-web/runtime.env
ExecStart=/usr/bin/python3 /opt/hello-web/hello_web.py
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


def _image(local_cloud: Any, name: str, write: Callable[[Path], None]) -> str:
    """An AMI issued by the emulator whose content is the build host's root with ``write`` applied."""
    from baker.local.moto.state import SOURCE_AMI_NAME

    ec2 = local_cloud.client("ec2")
    source = ec2.describe_images(Filters=[{"Name": "name", "Values": [SOURCE_AMI_NAME]}])["Images"][0]
    seed = ec2.run_instances(ImageId=source["ImageId"], MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=seed, Name=f"{name}-{time.time_ns()}")["ImageId"]
    ec2.terminate_instances(InstanceIds=[seed])
    host = local_cloud.build_host
    with host.session() as sess:
        write(sess.root)
        host.commit(sess, ami)
    return ami


def bake_hello(local_cloud: Any, version: str) -> str:
    """An AMI whose content is the example app (hello-web) at ``version``, started by systemd."""

    def write(root: Path) -> None:
        (root / "opt/hello-web").mkdir(parents=True)
        (root / "opt/hello-web/hello_web.py").write_text(HELLO_APP.read_text())
        (root / "opt/hello-web/VERSION").write_text(f"{version}\n")
        (root / "etc/systemd/system/hello-web.service").write_text(HELLO_UNIT)
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "hello-web.service").symlink_to("/etc/systemd/system/hello-web.service")

    return _image(local_cloud, f"hello-{version}", write)


def listener_port(elb: Any, endpoint: str, lb_name: str, port: int = 80) -> int:
    """The loopback port where the local cloud serves the listener on ``port`` of load balancer
    ``lb_name`` (as ``baker local status`` lists it): where users of the fleet send requests."""
    from baker.local import cloud

    lb = elb.describe_load_balancers(Names=[lb_name])["LoadBalancers"][0]
    listeners = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    arn = next(x["ListenerArn"] for x in listeners if x["Port"] == port)
    found = cloud.listener(endpoint, arn)
    assert found is not None, f"the listener on port {port} of {lb_name} answers nowhere"
    return int(str(found["url"]).rsplit(":", 1)[1])


class Users:
    """GET ``path`` through a listener on 127.0.0.1:``port``, one connection per request, every
    answer kept as (status, body); status 0 when the connection failed. With ``tls`` (a client
    context trusting the listener's certificate) over HTTPS."""

    def __init__(
        self, port: int, path: str = "/version", pause: float = 0.1, tls: ssl.SSLContext | None = None
    ) -> None:
        self.port, self.path, self.pause, self.tls = port, path, pause, tls
        self.answers: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="users", daemon=True)

    def get(self) -> tuple[int, str]:
        try:
            conn = (
                http.client.HTTPSConnection("127.0.0.1", self.port, timeout=5, context=self.tls)
                if self.tls
                else http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            )
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                return resp.status, resp.read().decode().strip()
            finally:
                conn.close()
        except OSError as exc:
            return 0, type(exc).__name__

    def _run(self) -> None:
        while not self._stop.is_set():
            self.answers.append(self.get())
            self._stop.wait(self.pause)

    def __enter__(self) -> Users:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def bake_probe(local_cloud: Any, version: str, *, healthy: bool = True) -> str:
    """An AMI (issued by the emulator) whose content is the probe app at ``version``."""

    def write(root: Path) -> None:
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

    return _image(local_cloud, f"probe-{version}", write)


def layer_ami(local_cloud: Any, base_ami: str, workdir: Path, write: Callable[[Path], None]) -> str:
    """An AMI registered from a child of ``base_ami``'s root snapshot that holds only the blocks
    ``write`` changed, uploaded through the EBS direct APIs: an app layer without an instance."""
    from baker.local import blocks, disks, kernel

    ec2, ebs = local_cloud.client("ec2"), local_cloud.client("ebs")
    base = ec2.describe_images(ImageIds=[base_ami])["Images"][0]
    parent = base["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    ebs.list_snapshot_blocks(SnapshotId=parent, MaxResults=100)  # the emulator takes the baked disk now
    store = blocks.BlockStore(local_cloud.state_dir / "snapshots")
    volume, mnt = workdir / "volume.img", workdir / "mnt"
    blocks.sparse_copy(store.path(parent), volume)
    offset, length = disks.root_partition(volume)
    mnt.mkdir(parents=True, exist_ok=True)
    options = f"loop,offset={offset},sizelimit={length}"
    try:
        subprocess.run(["mount", "-t", "ext4", "-o", options, str(volume), str(mnt)], check=True)
        try:
            write(mnt)
        finally:
            kernel.unmount_under(mnt)
        size = base["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"]
        child = ebs.start_snapshot(VolumeSize=size, ParentSnapshotId=parent)["SnapshotId"]
        changed = 0
        with volume.open("rb") as mine:
            for index in sorted(set(blocks.block_indexes(volume)) | set(store.blocks(parent))):
                mine.seek(index * blocks.BLOCK_SIZE)
                data = mine.read(blocks.BLOCK_SIZE).ljust(blocks.BLOCK_SIZE, b"\0")
                if data != store.read(parent, index):
                    ebs.put_snapshot_block(SnapshotId=child, BlockIndex=index, BlockData=data,
                                           DataLength=len(data), Checksum=blocks.checksum(data),
                                           ChecksumAlgorithm="SHA256")  # fmt: skip
                    changed += 1
    finally:
        volume.unlink(missing_ok=True)
    ebs.complete_snapshot(SnapshotId=child, ChangedBlocksCount=changed)
    return str(
        ec2.register_image(
            Name=f"layer-{time.time_ns()}",
            RootDeviceName=base["RootDeviceName"],
            Architecture="x86_64",
            VirtualizationType="hvm",
            EnaSupport=True,
            BlockDeviceMappings=[{"DeviceName": base["RootDeviceName"], "Ebs": {"SnapshotId": child}}],
        )["ImageId"]
    )


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


def blue_green_environment(
    name: str, env: str, greeting: str, runtime: dict[str, str] | None = None, **deploy: Any
) -> dict[str, Any]:
    """environments/<env>.yml of a small blue/green fleet of live instances: one instance a color,
    checks every 5 s, 5 s of draining; ``deploy`` adds to (or overrides) its deploy settings."""
    return {
        "aws": {"region": "us-east-1"},
        "runtime": {"env": {"HELLO_GREETING": greeting, **(runtime or {})}},
        "deploy": {
            "backend": {
                "bucket": "baker-tfstate-123456789012",
                "key": f"hello-web/{env}.tfstate",
                "region": "us-east-1",
            },
            "variables": {
                "name": name,
                "min_size": 1,
                "desired_capacity": 1,
                "health_check_interval": 5,
                "deregistration_delay": 5,
            },
            "strategy": "blue_green",
            **deploy,
        },
    }
