"""Secrets stay put: the vault password reaches only the vault client (through baker's handoff), and
the variable ``bake.vault_password: {env: NAME}`` names reaches no child at all.

Children are stand-ins from tests/fakes/ that dump their environment (named for what they are);
the vault client is the real ansible/vault-pass-client.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from baker import bake, package, render, runner, vault
from baker.cli import main
from baker.config import load_project
from baker.errors import BakerError, ToolError
from tests.conftest import copy_project
from tests.standins import NoCredentialsAWS, PackerMadeEC2

REPO = Path(__file__).resolve().parents[2]
FAKES = REPO / "tests" / "fakes"
CLIENT = REPO / "ansible" / "vault-pass-client.py"
PASSWORD = "vault-pw-only-for-the-client-7731"
VAR = "BAKER_TEST_VAULT_PASS"


@pytest.fixture
def dumps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH whose dpkg-deb, ssh, sftp, ansible-playbook and terraform dump their environment."""
    out = tmp_path / "dumps"
    out.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("dpkg-deb", "ssh", "sftp", "ansible-playbook", "terraform"):
        (bin_dir / name).symlink_to(FAKES / "dump-environ")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("BAKER_FAKE_DUMP_DIR", str(out))
    monkeypatch.setenv(VAR, PASSWORD)
    return out


def environments(dump_dir: Path) -> dict[str, list[dict[str, str]]]:
    """program name -> the environments its runs had."""
    found: dict[str, list[dict[str, str]]] = {}
    for path in sorted(dump_dir.glob("*.env")):
        pairs = [p.split(b"=", 1) for p in path.read_bytes().split(b"\0") if p]
        found.setdefault(path.name.split(".")[0], []).append({k.decode(): v.decode() for k, v in pairs})
    return found


def assert_clean(dump_dir: Path, *programs: str) -> None:
    seen = environments(dump_dir)
    for program in programs:
        assert seen.get(program), f"{program} did not run"
        for environ in seen[program]:
            assert VAR not in environ, program
            assert not any(PASSWORD in v for v in environ.values()), program
    for path in [*dump_dir.glob("*.env"), *dump_dir.glob("*.argv")]:
        assert PASSWORD.encode() not in path.read_bytes(), path  # nor on any command line


# ---------------------------------------------------------------- runner: the one place


def test_child_env_drops_withheld_names_and_values():
    held = runner.Withheld(frozenset({"A"}), frozenset({"s3cret"}))
    assert runner.child_env({"A": "1", "B": "s3cret", "C": "ok"}, held) == {"C": "ok"}
    assert runner.child_env({"A": "1"}, runner.Withheld()) == {"A": "1"}


def test_withhold_holds_for_its_block_in_every_thread(dumps: Path):
    import threading

    with runner.withhold([VAR]):
        assert VAR in runner.withheld().names
        worker = threading.Thread(target=lambda: runner.run(["ssh", "host"], echo=False))
        worker.start()
        worker.join()
        runner.run(["sftp", "host"], env=dict(os.environ), echo=False)
    assert VAR not in runner.withheld().names
    assert_clean(dumps, "ssh", "sftp")
    # the stand-ins do see an ordinary variable: without the block the variable is inherited
    runner.run(["ssh", "again"], echo=False)
    assert any(VAR in e for e in environments(dumps)["ssh"])


# ---------------------------------------------------------------- the vault handoff


def test_the_real_vault_client_gets_the_password_and_nothing_else_does(tmp_path: Path):
    label = "0123456789abcdef"
    env = {k: v for k, v in os.environ.items() if "VAULT" not in k.upper()}  # it needs none
    with vault.handoff(PASSWORD, CLIENT, label) as name:
        assert name == vault.socket_name(label) and name.startswith("\0")  # abstract: no file
        # as Ansible calls a *-client* script: --vault-id <label>
        got = subprocess.run([str(CLIENT), "--vault-id", label], env=env, capture_output=True, check=True)
        assert got.stdout == PASSWORD.encode() + b"\n"
        again = subprocess.run(
            [sys.executable, str(CLIENT), f"--vault-id={label}"], env=env, capture_output=True, check=True
        )
        assert again.stdout.strip() == PASSWORD.encode()
        # another build's label is another socket: nobody answers there
        other_build = subprocess.run([str(CLIENT), "--vault-id", "f" * 16], capture_output=True, check=False)
        assert other_build.returncode == 1 and b"cannot reach baker" in other_build.stderr
        # a copy of the client elsewhere, or another program asking, gets nothing
        impostor = tmp_path / "vault-pass-client.py"
        shutil.copy(CLIENT, impostor)
        refused = subprocess.run(
            [sys.executable, str(impostor), "--vault-id", label], env=env, capture_output=True, check=False
        )
        assert refused.returncode == 1 and PASSWORD.encode() not in refused.stdout
        asks = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({name!r}); print(s.recv(99))"
        other = subprocess.run([sys.executable, "-c", asks, str(CLIENT)], capture_output=True, check=True)
        assert PASSWORD.encode() not in other.stdout
        # the name is taken while the build runs: a second server cannot squat it
        with pytest.raises(BakerError, match="another process holds it"), vault.handoff("x", CLIENT, label):
            pass
    # the block is over: the name is free (nothing answers, nothing is left on disk)
    gone = subprocess.run([str(CLIENT), "--vault-id", label], env=env, capture_output=True, check=False)
    assert gone.returncode == 1 and b"cannot reach baker" in gone.stderr


def test_the_client_reads_only_a_server_of_its_own_user():
    """A socket of another user squatting the name feeds the client nothing: it checks the
    server's uid (SO_PEERCRED) before reading. Needs root to be that other user."""
    if os.getuid() != 0:
        pytest.skip("needs root to serve as another user")
    label = "squatted0000000a"
    squatter = (
        "import os, socket, sys\n"
        "os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX); s.bind('\\0baker-vault/' + sys.argv[1]); s.listen(1)\n"
        "print('ready', flush=True)\n"
        "c, _ = s.accept(); c.sendall(b'fed-by-someone-else')\n"
    )
    server = subprocess.Popen([sys.executable, "-c", squatter, label], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        got = subprocess.run([str(CLIENT), "--vault-id", label], capture_output=True, check=False)
        assert got.returncode == 1 and got.stdout == b""
        assert b"served by uid 65534, not by this user" in got.stderr
    finally:
        server.kill()
        server.wait()


def test_the_client_without_baker_says_so():
    got = subprocess.run([str(CLIENT)], capture_output=True, check=False)
    assert got.returncode == 1 and b"no --vault-id given" in got.stderr
    bad = subprocess.run([str(CLIENT), "--vault-id", "../x"], capture_output=True, check=False)
    assert bad.returncode == 1 and b"not a baker build id" in bad.stderr


# ---------------------------------------------------------------- a bake, end to end with stand-ins


_EC2 = PackerMadeEC2
_AWS = NoCredentialsAWS


def test_packer_and_what_it_starts_never_see_the_password(tmp_path: Path, dumps: Path, monkeypatch):
    (tmp_path / "p").mkdir()
    project_dir = copy_project(tmp_path / "p", "environments", "ansible")
    with (project_dir / "environments/dev.yml").open("a") as f:
        f.write(f"bake:\n  vault_file: ansible/vars/secrets.example.yml\n  vault_password:\n    env: {VAR}\n")
    project = load_project(project_dir)
    env = project.environment("dev")
    monkeypatch.setenv("BAKER_FAKE_PASSWORD_CLIENT", str(project_dir / "ansible" / render.VAULT_CLIENT))
    out = tmp_path / "build"
    out.mkdir()
    template = out / render.TEMPLATE_OUT
    template.write_text("# not used by the stand-in\n")
    rendered = render.Rendered(
        directory=out,
        template=template,
        variables=out / render.VARIABLES_OUT,
        text="",
        packer_version=(1, 6, 6),
        source=render.SourceImage("ami-0fedcba9876543210", "debian", "/dev/xvda", "136693071363"),
    )
    deb = out / "app.deb"
    deb.write_bytes(b"")
    pkg = package.Package(deb, "hello-web", "0.1.0", "0" * 64, None, "2026-01-01T00:00:00Z")
    source = render.SourceImage("ami-0fedcba9876543210", "debian", "/dev/xvda", "136693071363")
    prepared = render.Prepared(
        pkg=pkg,
        source=source,
        packer_version=(1, 6, 6),
        recipe="f" * 64,
        ec2=_EC2(),
        directory=out,
        renderer=lambda: rendered,
    )
    stage = bake.Bake(project, env, _AWS(), packer=str(FAKES / "packer-that-asks-the-vault"))  # type: ignore[arg-type]
    amis, *_ = stage._build(prepared)
    assert amis == {"us-east-1": "ami-0123456789abcdef0"}
    assert (dumps / "vault-client.out").read_bytes() == PASSWORD.encode() + b"\n"
    assert_clean(dumps, "packer", "ansible-playbook", "ssh", "sftp")
    # nor where to ask for it: no child's environment names the vault or the handoff's socket
    for program, runs in environments(dumps).items():
        for environ in runs:
            assert not [k for k in environ if "VAULT" in k.upper()], program
            assert not [v for v in environ.values() if "baker-vault" in v], program


def test_no_child_of_a_bake_command_inherits_the_secret_variable(tmp_path: Path, dumps: Path, monkeypatch):
    """`baker bake` from the CLI: dpkg-deb (the first child) runs without the variable."""
    project_dir = copy_project(tmp_path, "environments", "examples", "ansible", "packer")
    with (project_dir / "environments/dev.yml").open("a") as f:
        f.write(f"bake:\n  vault_file: ansible/vars/secrets.example.yml\n  vault_password:\n    env: {VAR}\n")
    monkeypatch.setenv("BAKER_FAKE_EXIT", "1")  # dpkg-deb fails: the bake stops there
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["--project", str(project_dir), "bake", "-e", "dev", "--allow-dirty"])
    assert code == ToolError.exit_code, err.getvalue()
    assert_clean(dumps, "dpkg-deb")
    assert PASSWORD not in err.getvalue()
    assert VAR not in runner.withheld().names  # released when the command ended
