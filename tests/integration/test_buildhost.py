"""The local cloud's build host with the real mmdebstrap, OpenSSH (sshd in the chroot) and paramiko.

The root filesystem is shared by every test of the run and cached between runs under
$BAKER_CACHE_DIR or ~/.cache/baker. When it is not cached yet, mmdebstrap alone runs in the network
namespace pytest was started from (tests/conftest.py moved this process into a loopback-only one);
everything else here runs in the loopback-only namespace.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from baker import runner
from baker.errors import UsageError
from baker.local import buildhost, cloud, rootfs, systemd
from baker.local.buildhost import BuildHost, BuildSession
from tests.localcloud import launcher_netns

PROBE = "baker-buildhost-probe"
PROBE_VERSION = "1.2.3-1"
FAKE_AMI = "ami-0b0b0b0b0b0b0b0b0"
COPIED_AMI = "ami-0c0c0c0c0c0c0c0c0"


@pytest.fixture(scope="session")
def build_host(isolated: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuildHost]:
    missing = [
        t
        for t in ("mmdebstrap", "ssh-keygen", "chroot", "mount", "dpkg-deb", "nsenter")
        if not shutil.which(t)
    ]
    if missing or not Path("/usr/sbin/sshd").exists():
        pytest.skip(f"missing on this machine: {', '.join(missing or ['openssh-server'])}")
    host = BuildHost(tmp_path_factory.mktemp("buildhost"), cloud.cache_dir(), fetch_netns=launcher_netns())
    host.ensure_rootfs()
    try:
        yield host
    finally:
        host.down()


@pytest.fixture(scope="session")
def probe_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real .deb: a file, a systemd unit its postinst enables and tries to start."""
    root = tmp_path_factory.mktemp("probe-deb")
    tree = root / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        f"Package: {PROBE}\nVersion: {PROBE_VERSION}\nArchitecture: all\nDepends: python3\n"
        "Maintainer: baker tests <tests@example.invalid>\nDescription: build host probe\n"
    )
    postinst = tree / "DEBIAN/postinst"
    postinst.write_text(
        "#!/bin/sh\nset -e\n"
        f'if [ "$1" = configure ]; then\n  deb-systemd-helper enable {PROBE}.service\n'
        f"  deb-systemd-invoke start {PROBE}.service\nfi\n"
    )
    postinst.chmod(0o755)
    (tree / "usr/share" / PROBE).mkdir(parents=True)
    (tree / "usr/share" / PROBE / "index.html").write_text(f"probe {PROBE_VERSION}\n")
    (tree / "etc/default").mkdir(parents=True)
    (tree / "etc/default" / PROBE).write_text(
        "# written by the package\nPROBE_PORT=8080\nPROBE_BIND='127.0.0.1'\n"
    )
    (tree / "lib/systemd/system").mkdir(parents=True)
    (tree / "lib/systemd/system" / f"{PROBE}.service").write_text(
        "[Unit]\nDescription=probe\n\n[Service]\nUser=nobody\n"
        f"EnvironmentFile=/etc/default/{PROBE}\nWorkingDirectory=/usr/share/{PROBE}\n"
        "ExecStart=/usr/bin/python3 -m http.server --bind ${PROBE_BIND} $PROBE_PORT\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    deb = root / f"{PROBE}.deb"
    runner.output(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)])
    return deb


@contextlib.contextmanager
def ssh(sess: BuildSession) -> Iterator[paramiko.SSHClient]:
    """A paramiko client that trusts exactly the session's host key."""
    client = paramiko.SSHClient()
    kind, blob = sess.host_key.split()[:2]
    assert kind == "ssh-ed25519"
    client.get_host_keys().add(
        f"[{sess.host}]:{sess.port}", kind, paramiko.Ed25519Key(data=base64.b64decode(blob))
    )
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key = paramiko.Ed25519Key.from_private_key_file(str(sess.private_key_file))
    client.connect(
        sess.host,
        port=sess.port,
        username=sess.user,
        pkey=key,
        allow_agent=False,
        look_for_keys=False,
        timeout=15,
    )
    try:
        yield client
    finally:
        client.close()


def run(client: paramiko.SSHClient, command: str) -> tuple[int, str]:
    _, stdout, stderr = client.exec_command(command, timeout=60)
    out = stdout.read().decode() + stderr.read().decode()
    return stdout.channel.recv_exit_status(), out


def installed(client: paramiko.SSHClient, package: str) -> str | None:
    rc, out = run(client, f"dpkg-query -W -f '${{Status}} ${{Version}}' {package}")
    return out.strip() if rc == 0 and "install ok installed" in out else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_session_is_a_debian_host_packer_and_ansible_can_use(build_host: BuildHost) -> None:
    with build_host.session() as sess, ssh(sess) as client:
        assert (sess.host, sess.user) == ("127.0.0.1", "admin")
        assert run(client, "id -un") == (0, "admin\n")
        assert run(client, "sudo -n true")[0] == 0
        rc, out = run(client, "python3 --version")
        assert rc == 0 and out.startswith("Python 3.")
        assert run(client, "python3 -c 'import apt'")[0] == 0, "Ansible's apt module needs python3-apt"
        assert (
            run(client, "sudo -n test -x /usr/sbin/policy-rc.d && sudo -n /usr/sbin/policy-rc.d x start")[0]
            == 101
        )
        # Ansible copies files with sftp; Packer's file provisioner with scp
        with client.open_sftp() as sftp:
            with sftp.open("/tmp/hello", "w") as f:
                f.write("hi")
            assert sftp.stat("/tmp/hello").st_size == 2
        assert run(client, "command -v scp")[0] == 0
        # a terminal of its own (Packer's ssh_pty), not one of this machine's
        _, stdout, _ = client.exec_command("tty", get_pty=True, timeout=30)
        assert stdout.read().decode().strip().startswith("/dev/pts/")
        assert os.stat(sess.root / "dev/pts").st_dev != os.stat("/dev/pts").st_dev
        # provisioning that renames the host renames the instance, not this machine
        before = socket.gethostname()
        assert run(client, "sudo -n hostname renamed-by-provisioning && hostname") == (
            0,
            "renamed-by-provisioning\n",
        )
        assert socket.gethostname() == before
        assert {s["id"]: s["running"] for s in build_host.status()["sessions"]}[sess.id]
    assert not {s["id"]: s["running"] for s in build_host.status()["sessions"]}[sess.id]
    assert (build_host.sessions_dir / sess.id / "upper/tmp/hello").is_file(), "kept for commit"


def test_bake_commit_boot(build_host: BuildHost, probe_deb: Path) -> None:
    rootfs = build_host.ensure_rootfs()
    with build_host.session() as bake, ssh(bake) as client:
        with client.open_sftp() as sftp:
            sftp.put(str(probe_deb), f"/tmp/{probe_deb.name}")
        rc, out = run(client, f"sudo -n dpkg -i /tmp/{probe_deb.name}")
        assert rc == 0, out
        assert installed(client, PROBE) == f"install ok installed {PROBE_VERSION}"
        # maintainer scripts enable units offline; policy-rc.d keeps them from starting
        rc, out = run(client, f"test -L /etc/systemd/system/multi-user.target.wants/{PROBE}.service")
        assert rc == 0, out
        assert run(client, "sudo -n systemctl enable ssh.service")[0] == 0, "Ansible's systemd module path"
        assert not [p for p in buildhost.processes_rooted_in(bake.root) if b"http.server" in _cmdline(p)]
        image = build_host.commit(bake, FAKE_AMI)

    assert build_host.image_root(FAKE_AMI) == image
    assert (image / "usr/share" / PROBE / "index.html").is_file()
    # the image carries neither the session's host key nor its client key
    assert not list(image.glob("etc/ssh/ssh_host_*")) and not list(image.glob("run/*"))
    assert not list(image.glob("home/*/.ssh/authorized_keys"))
    # neither the cached root filesystem nor this machine got the package
    assert PROBE not in (rootfs / "var/lib/dpkg/status").read_text()
    assert not (rootfs / "usr/share" / PROBE).exists()
    host_query = runner.run(["dpkg-query", "-W", PROBE], check=False, capture=True, echo=False)
    assert host_query.returncode != 0 and not Path("/usr/share", PROBE).exists()
    assert [i["ami_id"] for i in build_host.status()["images"]] == [FAKE_AMI]
    with pytest.raises(UsageError):
        build_host.commit(bake, FAKE_AMI)

    with build_host.boot(FAKE_AMI) as instance, ssh(instance) as client:
        assert instance.ami_id == FAKE_AMI and instance.kind == "instance"
        assert installed(client, PROBE) == f"install ok installed {PROBE_VERSION}"
        port = free_port()
        build_host.start_service(instance, f"{PROBE}.service", env={"PROBE_PORT": str(port)})
        assert _get(port, "/index.html") == f"probe {PROBE_VERSION}\n"
    assert not _listening(port), "the app ends with the instance"

    with build_host.session() as fresh, ssh(fresh) as client:
        assert installed(client, PROBE) is None, "a new bake must not see an earlier bake's changes"
    with build_host.boot(FAKE_AMI) as again:
        assert (again.root / "usr/share" / PROBE).is_dir(), "booting does not consume the image"
        (again.root / "usr/share" / PROBE / "index.html").write_text("changed by an instance")
    assert (image / "usr/share" / PROBE / "index.html").read_text() == f"probe {PROBE_VERSION}\n"

    copied = build_host.copy_image(FAKE_AMI, COPIED_AMI)
    with build_host.boot(COPIED_AMI) as copy, ssh(copy) as client:
        assert installed(client, PROBE) == f"install ok installed {PROBE_VERSION}"
    assert build_host.image_root(COPIED_AMI) == copied


def test_down_recovers_after_a_crash(build_host: BuildHost, tmp_path: Path) -> None:
    """A second BuildHost on the same state dir (a new process after a crash) ends and unmounts all."""
    state = tmp_path / "state"
    first = BuildHost(state, build_host.cache_dir)
    with contextlib.ExitStack() as crashed:
        sessions = [
            crashed.enter_context(first.session()),
            crashed.enter_context(first.session(ssh_user="ubuntu")),
        ]
        assert buildhost.mounts_under(state) and buildhost.processes_rooted_in(state)
        with ssh(sessions[1]) as client:
            assert run(client, "id -un && sudo -n hostname") == (0, "ubuntu\nbaker-build\n")

        report = BuildHost(state, build_host.cache_dir).down()
        assert {s.pid for s in sessions} <= set(report["stopped"])
        assert buildhost.mounts_under(state) == []
        assert buildhost.processes_rooted_in(state) == []
        assert not any(_alive(s.pid) for s in sessions)
        again = BuildHost(state, build_host.cache_dir).down()
        assert again == {"stopped": [], "unmounted": [], "sessions_removed": []}
    # leaving the block ran the crashed process's own cleanup: it found nothing left to do
    assert BuildHost(state, build_host.cache_dir).status()["sessions"] == []


def test_rootfs_fetch_runs_alone_in_the_named_namespace() -> None:
    recipe = rootfs.rootfs_recipe("bookworm", "amd64", [])
    argv = rootfs.mmdebstrap_argv(recipe, Path("/c/x"), [Path("/etc/apt/a.sources")], "/proc/7/ns/net")
    assert argv[:3] == ["nsenter", "--net=/proc/7/ns/net", "--"]
    assert argv[3] == "mmdebstrap" and "--variant=minbase" in argv and argv[-1] == "/etc/apt/a.sources"
    assert "python3-apt" in next(a for a in argv if a.startswith("--include="))
    assert rootfs.mmdebstrap_argv(recipe, Path("/c/x"), [])[0] == "mmdebstrap"


def test_rootfs_key_follows_sources_and_packages(tmp_path: Path) -> None:
    src = tmp_path / "debian.sources"
    src.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n")
    key = rootfs.recipe_key(rootfs.rootfs_recipe("bookworm", "amd64", [src]))
    assert key == rootfs.recipe_key(rootfs.rootfs_recipe("bookworm", "amd64", [src]))
    assert key != rootfs.recipe_key(rootfs.rootfs_recipe("bookworm", "amd64", [src], ("python3",)))
    src.write_text(src.read_text().replace("mirror.example", "other.example"))
    assert key != rootfs.recipe_key(rootfs.rootfs_recipe("bookworm", "amd64", [src]))


def test_host_apt_sources_skips_disabled_files(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("# nothing here\n")
    for name in ("debian.sources", "extra.list", "old.list.disabled-by-farm", "x.sources.save"):
        (tmp_path / "sources.list.d" / name).write_text("deb http://mirror.example/debian bookworm main\n")
    assert [p.name for p in rootfs.host_apt_sources(tmp_path)] == ["debian.sources", "extra.list"]


def test_unit_parsing_for_services_without_systemd() -> None:
    env = systemd.parse_env_file("# c\nA=1\nB='two words'\nC=\"x\"\n\n")
    assert env == {"A": "1", "B": "two words", "C": "x"}
    unit = systemd.parse_unit(
        "[Unit]\nExecStart=/wrong\n[Service]\nExecStart=-/bin/app \\\n  --port ${A} $B\n"
    )
    assert systemd.expand_exec(unit["ExecStart"][-1], env) == ["/bin/app", "--port", "1", "two", "words"]


def test_a_failed_bake_keeps_nothing(build_host: BuildHost) -> None:
    with pytest.raises(RuntimeError), build_host.session() as sess:
        (sess.root / "etc/failed-bake").write_text("x")
        raise RuntimeError("provisioning failed")
    assert not (build_host.sessions_dir / sess.id).exists()
    assert not buildhost.mounts_under(build_host.sessions_dir / sess.id)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    return buildhost._alive(pid)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _get(port: int, path: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
