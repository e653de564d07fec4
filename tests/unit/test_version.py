"""Versions from real git repositories, ordered by the real ``dpkg --compare-versions``."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
from pathlib import Path

import pytest

from baker.errors import ToolError, UsageError
from baker.version import GitState, compose, derive, tag_version
from tests.conftest import need_tools

BASE = "0.1.0"


class Repo:
    """A throwaway git repository with an app directory, committed and tagged for real."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.app = root / "app"
        self.app.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")
        self.n = 0

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        }
        return subprocess.run(
            ["git", "-C", str(self.root), *args], check=True, capture_output=True, text=True, env=env
        ).stdout.strip()

    def commit(self) -> str:
        self.n += 1
        (self.app / "app.py").write_text(f"print({self.n})\n")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", f"change {self.n}")
        return self.git("rev-parse", "HEAD")

    def tag(self, name: str) -> None:
        self.git("tag", name)

    def version(self, *, allow_dirty: bool = False) -> str:
        return derive(BASE, self.app, [self.app], allow_dirty=allow_dirty).version


def dpkg_lt(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0


def assert_ascending(versions: list[str]) -> None:
    for a, b in itertools.pairwise(versions):
        assert dpkg_lt(a, b), f"dpkg does not order {a} < {b}"


@pytest.fixture
def warnings(caplog):
    """baker's log records, even after an in-process CLI run pointed the logger at its own handler."""
    logger = logging.getLogger("baker")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.WARNING, logger="baker")
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.fixture
def repo(tmp_path):
    need_tools("git", "dpkg")
    return Repo(tmp_path / "repo")


def test_the_whole_history_sorts_in_release_order(repo):
    """untagged -> tag -> commits after -> rc -> commits after rc -> release -> later commits."""
    seen = []
    sha = repo.commit()
    assert repo.version() == f"0.1.0~1.g{sha[:7]}"
    seen.append(repo.version())
    sha = repo.commit()
    assert repo.version() == f"0.1.0~2.g{sha[:7]}"
    seen.append(repo.version())
    repo.tag("v0.1.0")
    assert repo.version() == "0.1.0"
    seen.append(repo.version())
    sha = repo.commit()
    repo.commit()
    sha = repo.commit()
    assert repo.version() == f"0.1.0+3.g{sha[:7]}"
    seen.append(repo.version())
    repo.commit()
    repo.tag("v1.0.0-rc1")
    assert repo.version() == "1.0.0~rc1"
    seen.append(repo.version())
    sha = repo.commit()
    assert repo.version() == f"1.0.0~rc1+1.g{sha[:7]}"
    seen.append(repo.version())
    repo.tag("v1.0.0-rc2")
    assert repo.version() == "1.0.0~rc2"
    seen.append(repo.version())
    repo.commit()
    repo.tag("v1.0.0")
    assert repo.version() == "1.0.0"
    seen.append(repo.version())
    sha = repo.commit()
    assert repo.version() == f"1.0.0+1.g{sha[:7]}"
    seen.append(repo.version())
    for _ in range(9):
        sha = repo.commit()
    assert repo.version() == f"1.0.0+10.g{sha[:7]}"  # 10 sorts after 1 (numeric, not text)
    seen.append(repo.version())
    repo.commit()
    repo.tag("v1.10.0")
    seen.append(repo.version())
    assert_ascending(seen)


def test_untagged_builds_sort_below_the_first_release_of_base_version(repo):
    sha = repo.commit()
    untagged = repo.version()
    assert untagged == f"{BASE}~1.g{sha[:7]}"
    assert_ascending([untagged, BASE, f"{BASE}+1.g{sha[:7]}"])


def test_a_release_tag_beats_an_rc_tag_on_the_same_commit(repo):
    repo.commit()
    repo.tag("v2.0.0")
    repo.tag("v2.0.0-rc1")
    assert repo.version() == "2.0.0"


def test_dirty_tree_is_refused(repo):
    repo.commit()
    repo.tag("v1.2.3")
    (repo.app / "app.py").write_text("print('uncommitted')\n")
    with pytest.raises(UsageError, match=r"uncommitted changes .*app/app\.py.*--allow-dirty") as exc:
        repo.version()
    assert exc.value.exit_code == 2


def test_untracked_file_in_the_app_makes_it_dirty(repo):
    repo.commit()
    (repo.app / "new.py").write_text("")
    with pytest.raises(UsageError, match=r"new\.py"):
        repo.version()


def test_allow_dirty_marks_the_version_and_sorts_between_commits(repo):
    repo.commit()
    repo.tag("v1.2.3")
    (repo.app / "app.py").write_text("print('uncommitted')\n")
    dirty_tagged = repo.version(allow_dirty=True)
    tagged_sha = repo.git("rev-parse", "HEAD")
    assert dirty_tagged == f"1.2.3+0.g{tagged_sha[:7]}.dirty"
    sha = repo.commit()
    (repo.app / "app.py").write_text("print('again')\n")
    dirty_after = repo.version(allow_dirty=True)
    assert dirty_after == f"1.2.3+1.g{sha[:7]}.dirty"
    repo.commit()
    next_commit = repo.version()
    assert_ascending(["1.2.3", dirty_tagged, f"1.2.3+1.g{sha[:7]}", dirty_after, next_commit])


def test_changes_outside_the_package_inputs_do_not_count(repo):
    sha = repo.commit()
    (repo.root / "notes.txt").write_text("not packaged\n")
    (repo.app / "__pycache__").mkdir()
    (repo.app / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    assert repo.version() == f"0.1.0~1.g{sha[:7]}"


def test_no_repository_gives_base_version_and_a_warning(tmp_path, warnings):
    need_tools("git")
    app = tmp_path / "app"
    app.mkdir()
    found = derive(BASE, app, [app])
    assert found.version == BASE and found.git is None
    assert "not in a git repository" in warnings.text


def test_repository_without_commits_gives_base_version(repo, warnings):
    assert repo.version() == BASE
    assert "no commit yet" in warnings.text


def test_no_git_installed_gives_base_version_and_a_warning(repo, monkeypatch, warnings, tmp_path):
    repo.commit()
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert repo.version() == BASE
    assert "git is not installed" in warnings.text


@pytest.mark.parametrize(
    ("tag", "version"),
    [
        ("v1.2.3", "1.2.3"),
        ("v2.0.0-rc1", "2.0.0~rc1"),
        ("v2.0.0rc2", "2.0.0~rc2"),
        ("v1.0.0-beta.2", "1.0.0~beta2"),
        ("v3.1", "3.1"),
    ],
)
def test_tag_versions(tag, version):
    assert tag_version(tag) == version


@pytest.mark.parametrize("tag", ["v1.2.3-hotfix", "v1.2.3+meta", "version-1"])
def test_tags_of_unknown_shape_are_refused_naming_the_tag(tag):
    with pytest.raises(UsageError, match=f"git tag '{tag.replace('+', '[+]')}'"):
        tag_version(tag)


def test_compose_is_the_documented_scheme():
    g = GitState(sha="abcdef0123456789", commit_time=0, tag=None, distance=7)
    assert compose("0.1.0", None) == "0.1.0"
    assert compose("0.1.0", g) == "0.1.0~7.gabcdef0"
    assert compose("0.1.0", GitState(sha=g.sha, commit_time=0, tag="v1.2.3", distance=0)) == "1.2.3"
    assert (
        compose("0.1.0", GitState(sha=g.sha, commit_time=0, tag="v1.2.3", distance=2)) == "1.2.3+2.gabcdef0"
    )
    dirty = GitState(sha=g.sha, commit_time=0, tag=None, distance=7, changes=(" M app.py",))
    assert compose("0.1.0", dirty) == "0.1.0~7.gabcdef0.dirty"
    tagged_dirty = GitState(sha=g.sha, commit_time=0, tag="v1.2.3", distance=0, changes=(" M app.py",))
    assert compose("0.1.0", tagged_dirty) == "1.2.3+0.gabcdef0.dirty"


def test_a_repository_git_refuses_to_read_is_an_error_not_a_silent_fallback(tmp_path, monkeypatch):
    """A CI checkout owned by another user: versioning every commit as base_version would be wrong."""
    need_tools("git")
    if os.geteuid() != 0:
        pytest.skip("needs root to give the repository to another user")
    repo = Repo(tmp_path / "foreign")
    repo.commit()
    for p in [repo.root, *repo.root.rglob("*")]:
        os.chown(p, 65534, 65534, follow_symlinks=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")  # no safe.directory exception from this machine
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    with pytest.raises(ToolError, match="git cannot read the repository") as exc:
        repo.version()
    assert exc.value.exit_code == 3
    assert "dubious ownership" in str(exc.value)


def test_a_shallow_clone_warns_that_the_version_may_be_wrong(repo, tmp_path, warnings):
    repo.commit()
    repo.tag("v1.0.0")
    repo.commit()
    repo.commit()
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(shallow)], check=True)
    found = derive(BASE, shallow / "app", [shallow / "app"])
    assert found.version.startswith(f"{BASE}~1.g")  # what git can see: one commit, no tag
    assert "shallow clone" in warnings.text
