"""`baker init`: a new git repository with a tiny app becomes a baker project; nothing is overwritten."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from baker import init as init_stage
from baker.cli import main
from tests.conftest import REPO, commit_all, git, need_tools


def baker(*args: str) -> tuple[int, dict, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--output", "json", *args])
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    return code, json.loads(lines[-1]) if lines else {}, err.getvalue()


def tiny_repo(root: Path) -> Path:
    """An existing git repository with a tiny app in app/ (one commit)."""
    need_tools("git")
    (root / "app").mkdir(parents=True)
    (root / "app" / "server.py").write_text("print('tiny')\n")
    (root / "README.md").write_text("tiny\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "tiny app")
    return root


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".git" not in p.parts)


def test_the_shipped_recipe_is_this_repositorys_own():
    """packer/, ansible/ and terraform/ ship as copies: `make init-templates` brings them in step."""
    assert init_stage.drift(REPO) == [], "run 'make init-templates' and commit the copies"


def test_init_writes_a_project_that_loads_for_every_environment(tmp_path):
    root = tiny_repo(tmp_path / "repo")
    code, r, err = baker("init", str(root), "--app", "tiny", "--source", "app")
    assert code == 0, err
    assert r["exec_start"] == "/usr/bin/python3 server.py"
    for name in ("baker.yml", "environments/defaults.yml", "environments/prod.yml", "packer/ami.pkr.hcl.j2"):
        assert name in r["files"] and (root / name).is_file()
    assert (root / "ansible/site.yml").read_bytes() == (REPO / "ansible/site.yml").read_bytes()
    assert (root / "ansible/vault-pass-client.py").stat().st_mode & 0o100, "Ansible runs it"
    assert not (root / "ansible/vars/secrets.example.yml").exists()
    assert git(root, "check-ignore", ".baker/build/dev/ami.pkr.hcl") == ".baker/build/dev/ami.pkr.hcl"
    for env in ("dev", "staging", "prod"):
        code, shown, err = baker("--project", str(root), "config", "show", "-e", env)
        assert code == 0, err
        assert shown["settings"]["deploy"]["variables"]["name"] == f"tiny-{env}"
    assert shown["settings"]["protected"] is True and shown["settings"]["promote_from"] == "staging"


def test_the_new_project_packages_once_committed(tmp_path):
    need_tools("dpkg-deb")
    root = tiny_repo(tmp_path / "repo")
    assert baker("init", str(root), "--app", "tiny", "--source", "app")[0] == 0
    code, _, err = baker("--project", str(root), "package", "--out", str(tmp_path / "out"))
    assert code == 2 and "uncommitted" in err and "baker.yml" in err  # until the user commits it
    commit_all(root)
    code, r, err = baker("--project", str(root), "package", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert r["package"] == "tiny" and Path(r["path"]).is_file()


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path):
    root = tiny_repo(tmp_path / "repo")
    (root / "environments").mkdir()
    (root / "environments" / "dev.yml").write_text("mine: true\n")
    before = listing(root)
    code, r, err = baker("init", str(root), "--app", "tiny", "--source", "app")
    assert code == 2
    assert "environments/dev.yml" in err and "nothing was written" in err
    assert r["existing"] == ["environments/dev.yml"]
    assert listing(root) == before
    assert (root / "environments" / "dev.yml").read_text() == "mine: true\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--app", "Tiny_App", "--source", "app"], "--app 'Tiny_App'"),
        (["--app", "tiny", "--source", "nope"], "--source nope: no such directory"),
        (["--app", "tiny", "--source", "../elsewhere"], "must be inside the project"),
        (["--app", "tiny", "--source", "."], "--exec-start"),  # nothing says what runs the app
        (["--app", "tiny", "--source", "app", "--port", "70000"], "--port 70000"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(tmp_path, args, says):
    root = tiny_repo(tmp_path / "repo")
    (tmp_path / "elsewhere").mkdir()
    before = listing(root)
    code, _, err = baker("init", str(root), *args)
    assert code == 2 and says in err, err
    assert listing(root) == before


def test_init_needs_a_git_repository(tmp_path):
    (tmp_path / "plain" / "app").mkdir(parents=True)
    code, _, err = baker("init", str(tmp_path / "plain"), "--app", "tiny", "--source", "app")
    assert code == 2 and "not in a git repository" in err
    assert listing(tmp_path / "plain") == ["app"]


def test_values_cannot_change_the_structure_of_the_yaml(tmp_path):
    root = tiny_repo(tmp_path / "repo")
    hostile = '/x" : {evil: [1'
    command = "/usr/bin/python3 server.py --greeting 'a: b' # not a comment"
    code, _, err = baker(
        "init",
        str(root),
        "--app",
        "tiny",
        "--source",
        "app",
        "--health-path",
        hostile,
        "--exec-start",
        command,
    )
    assert code == 0, err
    code, shown, err = baker("--project", str(root), "config", "show", "-e", "dev")
    assert code == 0, err
    assert shown["settings"]["deploy"]["variables"]["health_check_path"] == hostile
    assert (
        init_stage.files(init_stage.Answers(app="tiny", source="app", exec_start=command))["baker.yml"].count(
            command.encode()
        )
        == 1
    )


def test_an_app_whose_source_is_the_whole_repository_stays_clean_after_a_build(tmp_path):
    need_tools("dpkg-deb")
    root = tiny_repo(tmp_path / "repo")
    command = "/usr/bin/python3 app/server.py"
    assert baker("init", str(root), "--app", "tiny", "--source", ".", "--exec-start", command)[0] == 0
    assert not (root / ".gitignore").exists()  # only init's own .baker/.gitignore keeps .baker/ out
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "baker")
    (root / ".baker" / "build" / "dev").mkdir(parents=True)
    (root / ".baker" / "build" / "dev" / "ami.pkr.hcl").write_text("output of an earlier render\n")
    (root / ".baker" / "release-dev.json").write_text("{}\n")  # where the GitLab recipe keeps results
    code, r, err = baker("--project", str(root), "package", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert not r["version"].endswith(".dirty")
