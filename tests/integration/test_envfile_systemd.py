"""systemd itself reads baker's environment files: the build host's cached Debian root filesystem
boots in a container (systemd-nspawn --boot, a volatile overlay so the cache is never written, a
private network), runs one unit with EnvironmentFile= pointing at a file envfile.render wrote, and
the unit's process writes the environment it got. Every value must arrive byte for byte.

This is the real exec path of a unit (parser and the environment clean-up systemd applies before
exec), which the environment.d generator in tests/unit/test_envfile.py can only approximate.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from baker import envfile
from tests.conftest import need_tools
from tests.unit.test_envfile import HOSTILE

pytestmark = pytest.mark.integration

UNIT = """\
[Unit]
Description=what EnvironmentFile= hands a service
[Service]
Type=oneshot
EnvironmentFile=/baker-test/app.env
ExecStart=/usr/bin/python3 /baker-test/dump.py
ExecStartPost=/usr/bin/systemctl poweroff --no-block
"""

#: the service: writes the environment it was started with, NUL-separated
DUMP = """\
import os

with open("/baker-out/env", "wb") as out:
    out.write(b"\\0".join(k.encode() + b"=" + v.encode() for k, v in os.environ.items()))
"""


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    from baker.local import cloud
    from baker.local.buildhost import BuildHost

    path = BuildHost(tmp_path / "state", cloud.cache_dir()).rootfs_path()
    if not (path / "usr/lib/systemd/systemd").is_file():
        pytest.skip(f"the build host's root filesystem is not cached ({path}): run 'baker local up'")
    return path


def test_systemd_hands_a_unit_every_value_byte_for_byte(isolated: str, rootfs: Path, tmp_path: Path):
    need_tools("systemd-nspawn")
    given, out = tmp_path / "given", tmp_path / "out"
    given.mkdir()
    out.mkdir()
    (given / "app.env").write_text(envfile.render(HOSTILE))
    (given / "envdump.service").write_text(UNIT)
    (given / "dump.py").write_text(DUMP)
    argv = [
        "systemd-nspawn",
        "--quiet",
        f"--directory={rootfs}",
        "--volatile=overlay",  # writes go to a tmpfs: the shared cache stays as it is
        "--private-network",
        "--register=no",
        "--keep-unit",
        f"--bind-ro={given}:/baker-test",
        f"--bind={out}:/baker-out",
        f"--bind-ro={given / 'envdump.service'}:/etc/systemd/system/envdump.service",
        "--boot",
        "--",
        "--unit=envdump.service",
    ]
    booted = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    dumped = out / "env"
    assert dumped.is_file(), booted.stdout.decode(errors="replace")[-2000:]
    pairs = [p.split(b"=", 1) for p in dumped.read_bytes().split(b"\0") if p]
    environ = {k.decode(): v.decode() for k, v in pairs}
    assert {k: environ.get(k) for k in HOSTILE} == HOSTILE
