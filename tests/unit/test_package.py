"""``baker package``: the real dpkg-deb building the example app from a throwaway git repository.

The project is copied (baker.yml, environments/, examples/hello-web) into a fresh repository per
test, so the state of the work tree baker itself is developed in never matters.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from baker import package as pkg
from baker.cli import main
from baker.config import load_project
from tests.conftest import REPO, need_tools

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout.strip()


def copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True)
    shutil.copy2(REPO / "baker.yml", dest / "baker.yml")
    shutil.copytree(REPO / "environments", dest / "environments")
    shutil.copytree(
        REPO / "examples" / "hello-web",
        dest / "examples" / "hello-web",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return dest


def commit_all(root: Path, message: str = "change") -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def project(tmp_path) -> Path:
    need_tools("git", "dpkg-deb", "dpkg")
    root = copy_project(tmp_path / "project")
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "initial")
    return root


def baker(capsys, *args: str) -> tuple[int, dict, str]:
    """Run the CLI in-process with --output json; (exit code, the JSON object, stderr)."""
    code = main(["--output", "json", *args])
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one JSON object on stdout, got {out!r}"
    return code, json.loads(lines[0]), err


def package(capsys, project: Path, out: Path, *extra: str) -> dict:
    code, result, err = baker(capsys, "--project", str(project), "package", "--out", str(out), *extra)
    assert code == 0, err
    return result


def field(deb: str | Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True, text=True
    ).stdout.strip()


def extract(deb: str | Path, dest: Path) -> Path:
    subprocess.run(["dpkg-deb", "-R", str(deb), str(dest)], check=True)
    return dest


# ---------------------------------------------------------------- reproducibility and the result


def test_same_commit_gives_a_byte_identical_deb(capsys, project, tmp_path):
    a = package(capsys, project, tmp_path / "A")
    b = package(capsys, project, tmp_path / "B")
    assert a["sha256"] == b["sha256"]
    assert Path(a["path"]).read_bytes() == Path(b["path"]).read_bytes()
    assert hashlib.sha256(Path(a["path"]).read_bytes()).hexdigest() == a["sha256"]


def test_a_bake_reuses_the_deb_of_unchanged_inputs_and_rebuilds_changed_content_or_damaged_bytes(
    project, tmp_path
):
    def build(**kwargs) -> pkg.Package:
        return pkg.build(load_project(project), tmp_path / "deb", reuse=True, **kwargs)

    first = build()
    written = first.path.stat().st_mtime_ns
    assert build().sha256 == first.sha256
    assert first.path.stat().st_mtime_ns == written, "unchanged inputs: the .deb is reused, not rebuilt"

    damaged = bytearray(first.path.read_bytes())
    damaged[-1] ^= 0xFF
    first.path.write_bytes(bytes(damaged))
    assert build().sha256 == first.sha256
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == first.sha256, "damaged bytes: rebuilt"

    # an uncommitted edit keeps the version (.dirty) but changes the content: rebuilt each time
    app = project / "examples/hello-web/hello_web.py"
    app.write_text(app.read_text() + "# one\n")
    one = build(allow_dirty=True)
    app.write_text(app.read_text() + "# two\n")
    two = build(allow_dirty=True)
    assert one.version == two.version and one.sha256 != two.sha256
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(two.path)], check=True, capture_output=True)
    assert b"# two" in tar.stdout


def test_a_clone_elsewhere_gives_the_same_bytes(capsys, project, tmp_path):
    """Another checkout path, another umask, later file times: still the same .deb."""
    a = package(capsys, project, tmp_path / "A")
    clone = tmp_path / "elsewhere" / "clone"
    old = os.umask(0o002)
    try:
        subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    finally:
        os.umask(old)
    for p in clone.rglob("*"):
        if ".git" not in p.parts:
            os.utime(p, (2_000_000_000, 2_000_000_000), follow_symlinks=False)
    b = package(capsys, clone, tmp_path / "B")
    assert b["sha256"] == a["sha256"]


def test_result_names_path_package_version_sha256_and_commit(capsys, project, tmp_path):
    r = package(capsys, project, tmp_path / "out")
    sha = git(project, "rev-parse", "HEAD")
    assert r["package"] == "hello-web"
    assert r["version"] == f"0.1.0~1.g{sha[:7]}"
    assert r["git_sha"] == sha
    assert Path(r["path"]) == (tmp_path / "out" / f"hello-web_{r['version']}_all.deb").resolve()
    assert re.fullmatch(r"[0-9a-f]{64}", r["sha256"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [Path(r["path"]).name]


def test_control_version_equals_the_reported_version(capsys, project, tmp_path):
    git(project, "tag", "v1.2.3")
    r = package(capsys, project, tmp_path / "out")
    assert r["version"] == "1.2.3"
    assert field(r["path"], "Version") == r["version"]
    (project / "examples" / "hello-web" / "extra.txt").write_text("more\n")
    sha = commit_all(project)
    r = package(capsys, project, tmp_path / "out2")
    assert field(r["path"], "Version") == r["version"] == f"1.2.3+1.g{sha[:7]}"


def test_text_output_shows_path_version_and_sha256(capsys, project, tmp_path):
    code = main(["--project", str(project), "package", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0
    deb = next((tmp_path / "out").iterdir())
    assert str(deb) in out and "version 0.1.0~1.g" in out
    assert hashlib.sha256(deb.read_bytes()).hexdigest() in out


def test_default_out_is_the_project_build_directory(capsys, project):
    (project / ".gitignore").write_text(".baker/\n")
    commit_all(project)
    r = package(capsys, project, project / ".baker" / "build")
    code, again, _ = baker(capsys, "--project", str(project), "package")
    assert code == 0 and again["path"] == r["path"]


# ---------------------------------------------------------------- control fields and contents


def test_control_fields_come_from_baker_yml(capsys, project, tmp_path):
    deb = package(capsys, project, tmp_path / "out")["path"]
    info = subprocess.run(["dpkg-deb", "--info", deb], check=True, capture_output=True, text=True).stdout
    for line in [
        "Package: hello-web",
        "Architecture: all",
        "Maintainer: Baker Maintainers <baker@example.com>",
        "Section: misc",
        "Priority: optional",
        "Description: tiny HTTP service with /healthz and /version",
        "hello-web is the example application of baker.",
    ]:
        assert line in info
    depends = [d.strip() for d in field(deb, "Depends").split(",")]
    assert "python3" in depends
    assert "adduser" in depends  # what the postinst uses to create the system user
    assert int(field(deb, "Installed-Size")) > 0


def test_contents_app_unit_conffile_docs_all_root_owned_at_commit_time(capsys, project, tmp_path):
    deb = package(capsys, project, tmp_path / "out")["path"]
    listing = subprocess.run(
        ["dpkg-deb", "--contents", deb], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    entries = {line.split()[-1].removeprefix("."): line.split() for line in listing}
    for path in [
        "/opt/hello-web/hello_web.py",
        "/opt/hello-web/VERSION",
        "/lib/systemd/system/hello-web.service",
        "/etc/default/hello-web",
        "/usr/share/doc/hello-web/copyright",
        "/usr/share/doc/hello-web/changelog.gz",
    ]:
        assert path in entries, f"{path} missing from the package"
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in entries)
    assert "/opt/hello-web/default.env" not in entries  # it is the conffile, not app code
    assert {e[1] for e in entries.values()} == {"root/root"}
    assert entries["/opt/hello-web/hello_web.py"][0] == "-rwxr-xr-x"
    assert entries["/etc/default/hello-web"][0] == "-rw-r--r--"
    commit_day = git(project, "log", "-1", "--format=%cd", "--date=format-local:%Y-%m-%d %H:%M")
    assert {f"{e[3]} {e[4]}" for e in entries.values()} == {commit_day}


def test_version_file_unit_and_maintainer_scripts(capsys, project, tmp_path):
    r = package(capsys, project, tmp_path / "out")
    root = extract(r["path"], tmp_path / "x")
    assert (root / "opt/hello-web/VERSION").read_text() == r["version"] + "\n"
    assert (root / "DEBIAN/conffiles").read_text() == "/etc/default/hello-web\n"
    assert (root / "etc/default/hello-web").read_text() == (
        project / "examples/hello-web/default.env"
    ).read_text()

    unit = (root / "lib/systemd/system/hello-web.service").read_text()
    for line in [
        "EnvironmentFile=-/etc/default/hello-web",
        "User=hello-web",
        "ExecStart=/usr/bin/python3 /opt/hello-web/hello_web.py",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "WantedBy=multi-user.target",
    ]:
        assert line in unit.splitlines()

    postinst = (root / "DEBIAN/postinst").read_text()
    assert "adduser --system" in postinst
    assert "deb-systemd-helper enable" in postinst
    assert "multi-user.target.wants" in postinst  # the plain link when deb-systemd-helper is missing
    for script in ("postinst", "prerm", "postrm"):
        text = (root / "DEBIAN" / script).read_text()
        assert os.access(root / "DEBIAN" / script, os.X_OK)
        assert not re.search(r"\b(systemctl|deb-systemd-invoke) (re)?start\b", text), (
            f"{script} starts the unit"
        )
        subprocess.run(["sh", "-n", str(root / "DEBIAN" / script)], check=True)

    md5sums = (root / "DEBIAN/md5sums").read_text()
    assert "opt/hello-web/hello_web.py" in md5sums and "etc/default/hello-web" not in md5sums


def test_postinst_without_deb_systemd_helper_enables_by_link_and_postrm_purge_removes_it(
    capsys, project, tmp_path
):
    """Run the real scripts against a scratch root (DPKG_ROOT), as dpkg would in a bare chroot.

    A stand-in ``getent`` (named for what it is) says the user exists, so nothing touches this
    machine's user database, and PATH holds no deb-systemd-helper, so the fallback path runs.
    """
    r = package(capsys, project, tmp_path / "out")
    pkg = extract(r["path"], tmp_path / "x")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "mkdir", "ln", "rm"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "getent").write_text('#!/bin/sh\n# test double: every user exists\necho "$2:x:999:999::/:"\n')
    (bin_dir / "getent").chmod(0o755)
    root = tmp_path / "root"
    root.mkdir()
    env = {"PATH": str(bin_dir), "DPKG_ROOT": str(root)}
    link = root / "etc/systemd/system/multi-user.target.wants/hello-web.service"

    subprocess.run([str(pkg / "DEBIAN/postinst"), "configure", ""], env=env, check=True)
    assert os.readlink(link) == "/lib/systemd/system/hello-web.service"
    subprocess.run([str(pkg / "DEBIAN/prerm"), "remove"], env=env, check=True)
    subprocess.run([str(pkg / "DEBIAN/postrm"), "remove"], env=env, check=True)
    subprocess.run([str(pkg / "DEBIAN/postrm"), "purge"], env=env, check=True)
    assert not link.is_symlink()


def test_lintian_finds_nothing_to_complain_about(capsys, project, tmp_path):
    need_tools("lintian")
    deb = package(capsys, project, tmp_path / "out")["path"]
    proc = subprocess.run(
        ["lintian", "--pedantic", "--info", "--fail-on", "error,warning,info,pedantic", deb],
        capture_output=True,
        text=True,
    )
    complaints = [line for line in proc.stdout.splitlines() if re.match(r"^[EWIP]: ", line)]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr


# ---------------------------------------------------------------- refusals: exit 2, nothing written


def edit_config(project: Path, change) -> None:
    data = yaml.safe_load((project / "baker.yml").read_text())
    change(data)
    (project / "baker.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    commit_all(project)


def refused(capsys, project: Path, out: Path, *extra: str) -> str:
    code, result, err = baker(capsys, "--project", str(project), "package", "--out", str(out), *extra)
    assert code == 2, err
    assert result["ok"] is False and result["exit_code"] == 2
    assert not out.exists(), "a refused package wrote something"
    return result["error"]


def test_invalid_package_name_is_refused(capsys, project, tmp_path):
    edit_config(project, lambda d: d["app"]["deb"].update(package="Hello_Web"))
    error = refused(capsys, project, tmp_path / "out")
    assert "app.deb.package" in error and "Hello_Web" in error


def test_invalid_base_version_is_refused(capsys, project, tmp_path):
    edit_config(project, lambda d: d["app"].update(base_version="one.two"))
    error = refused(capsys, project, tmp_path / "out")
    assert "app.base_version" in error and "one.two" in error


def test_invalid_version_tag_is_refused(capsys, project, tmp_path):
    git(project, "tag", "v1.2.3-hotfix")
    error = refused(capsys, project, tmp_path / "out")
    assert "v1.2.3-hotfix" in error


def test_missing_app_directory_is_refused(capsys, project, tmp_path):
    edit_config(project, lambda d: d["app"].update(source="examples/nope"))
    error = refused(capsys, project, tmp_path / "out")
    assert "app.source" in error and "examples/nope" in error


def test_invalid_service_user_is_refused(capsys, project, tmp_path):
    edit_config(project, lambda d: d["app"]["deb"].update(user="Bad User"))
    error = refused(capsys, project, tmp_path / "out")
    assert "app.deb.user" in error


def test_unwritable_out_directory_is_refused(capsys, project, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    error = refused(capsys, project, blocker / "out")
    assert str(blocker / "out") in error


def test_dirty_tree_is_refused_unless_allowed(capsys, project, tmp_path):
    app = project / "examples/hello-web/hello_web.py"
    app.write_text(app.read_text() + "# local change\n")
    error = refused(capsys, project, tmp_path / "out")
    assert "uncommitted" in error and "hello_web.py" in error and "--allow-dirty" in error
    r = package(capsys, project, tmp_path / "out", "--allow-dirty")
    assert r["version"].endswith(".dirty")
    assert field(r["path"], "Version") == r["version"]


def test_without_git_the_version_is_base_version_with_a_warning(capsys, tmp_path):
    need_tools("dpkg-deb")
    project = copy_project(tmp_path / "plain")
    code, r, err = baker(capsys, "--project", str(project), "package", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert r["version"] == "0.1.0" and r["git_sha"] is None
    assert "warning" in err and "base_version" in err


# ---------------------------------------------------------------- a real install on Debian


class DebianRoot:
    """A writable overlay over the build host's cached Debian root filesystem.

    Every command runs in its own private mount namespace (``unshare --mount``) that mounts the
    overlay and chroots into it, so no mount outlives the command, even when a test fails. What
    the commands change lands in ``upper``, which the next command sees again.
    """

    def __init__(self, lower: Path, base: Path) -> None:
        self.lower = lower
        self.upper, self.work, self.merged = base / "upper", base / "work", base / "merged"
        for d in (self.upper / "tmp", self.work, self.merged):
            d.mkdir(parents=True)

    def argv(self, *command: str) -> list[str]:
        script = (
            'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4" || exit 1; '
            'root=$4; shift 4; exec chroot "$root" "$@"'
        )
        layers = [str(self.lower), str(self.upper), str(self.work), str(self.merged)]
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *layers, *command]

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(*command), capture_output=True, text=True, timeout=120)
        if check:
            assert proc.returncode == 0, f"{command} failed: {proc.stdout}{proc.stderr}"
        return proc

    def install(self, deb: str | Path) -> None:
        shutil.copyfile(deb, self.upper / "tmp" / "package.deb")
        self.run("dpkg", "-i", "/tmp/package.deb")

    def exists(self, path: str) -> bool:
        return self.run("test", "-e", path, check=False).returncode == 0

    def link(self, path: str) -> str | None:
        proc = self.run("readlink", path, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None


@pytest.fixture
def debian_root(tmp_path, debian_rootfs) -> DebianRoot:
    need_tools("unshare", "chroot", "mount")
    return DebianRoot(debian_rootfs, tmp_path / "root")


WANTS = "/etc/systemd/system/multi-user.target.wants/hello-web.service"


@pytest.mark.integration
def test_install_upgrade_remove_purge_on_debian(capsys, project, tmp_path, debian_root):
    """dpkg -i creates the user and enables (never starts) the unit; upgrades keep it; purge forgets it."""
    first = package(capsys, project, tmp_path / "v1")
    debian_root.install(first["path"])
    user = debian_root.run("getent", "passwd", "hello-web").stdout.split(":")
    assert int(user[2]) < 1000 and user[6].strip() == "/usr/sbin/nologin"  # a system user
    assert debian_root.link(WANTS) == "/lib/systemd/system/hello-web.service"
    assert debian_root.run("cat", "/opt/hello-web/VERSION").stdout.strip() == first["version"]
    # systemd itself accepts the unit (directives, user, ExecStart), though it is not running here
    verify = debian_root.run("systemd-analyze", "verify", "/lib/systemd/system/hello-web.service")
    assert verify.stdout + verify.stderr == ""

    # the installed app, started as the unit would (settings from the conffile), answers its version
    script = (
        "set -a; . /etc/default/hello-web; HELLO_BIND=127.0.0.1; HELLO_PORT=0; "
        "exec python3 /opt/hello-web/hello_web.py"
    )
    app = subprocess.Popen(debian_root.argv("sh", "-c", script), stdout=subprocess.PIPE, text=True)
    try:
        line = app.stdout.readline() if app.stdout else ""
        port = re.search(r":(\d+)$", line.strip())
        assert port, line
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port.group(1)}/version", timeout=10) as response:
            assert response.read().decode().strip() == first["version"]
    finally:
        app.terminate()
        app.wait(timeout=10)

    # the admin disables the unit: an upgrade respects that
    debian_root.run("systemctl", "disable", "hello-web.service")
    assert debian_root.link(WANTS) is None
    (project / "examples/hello-web/extra.txt").write_text("v2\n")
    commit_all(project)
    second = package(capsys, project, tmp_path / "v2")
    debian_root.install(second["path"])
    assert debian_root.run("dpkg-query", "-W", "-f=${Version}", "hello-web").stdout == second["version"]
    assert debian_root.link(WANTS) is None

    debian_root.run("dpkg", "-r", "hello-web")
    assert not debian_root.exists("/opt/hello-web")
    assert debian_root.exists("/etc/default/hello-web")  # a conffile stays until purge
    debian_root.run("dpkg", "--purge", "hello-web")
    assert not debian_root.exists("/etc/default/hello-web")
    assert debian_root.link(WANTS) is None
    assert debian_root.link("/etc/systemd/system/hello-web.service") is None  # not left masked


@pytest.mark.integration
def test_a_debian_name_with_a_dot_and_a_plus_installs_with_derived_user_and_unit(
    capsys, project, tmp_path, debian_root
):
    """`acme.tools+x` is a valid Debian package name but no valid user name: baker derives the
    user `acme-tools-x` and the unit `acme.tools-x.service`, and Debian accepts both."""
    text = (project / "baker.yml").read_text()
    text = text.replace("package: hello-web", "package: acme.tools+x").replace(
        "/opt/hello-web/hello_web.py", "hello_web.py"
    )
    (project / "baker.yml").write_text(text)
    commit_all(project)
    built = package(capsys, project, tmp_path / "out")
    assert built["package"] == "acme.tools+x"
    debian_root.install(built["path"])
    user = debian_root.run("getent", "passwd", "acme-tools-x").stdout.split(":")
    assert int(user[2]) < 1000
    unit = "/lib/systemd/system/acme.tools-x.service"
    assert debian_root.link("/etc/systemd/system/multi-user.target.wants/acme.tools-x.service") == unit
    verify = debian_root.run("systemd-analyze", "verify", unit)
    assert verify.stdout + verify.stderr == ""
