"""Bad configuration is refused early: exit 2, a clear message naming file and key, nothing built,
no secret shown. The cases live in bad_configs.py (bench/bench_faults.py times the same ones)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from baker.cli import main
from baker.config import SecretRef, load_project, read_yaml, redacted, system_user, unit_name
from baker.errors import ConfigError, UsageError
from tests.unit.bad_configs import CASES, NEVER, SECRET, Case, make_project


def run(project: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--project", str(project), *args])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_configuration_is_refused_with_one_clear_message(case: Case, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("X_PASS", SECRET)
    project = make_project(tmp_path, case)
    code, out, err = run(project, "--output", "json", *case.args)
    assert code == 2, err
    result = json.loads(out)
    assert result["ok"] is False and result["exit_code"] == 2
    message = result["error"]
    assert err.startswith("baker: error: ")
    for text in case.expect:
        assert text in message, (text, message)
    for text in (*NEVER, *case.forbid):
        assert text not in out + err, (text, out + err)
    # nothing was built
    assert not (project / ".baker").exists()


def test_the_alias_policy_allows_a_few_anchors_and_merges(tmp_path: Path):
    path = tmp_path / "x.yml"
    path.write_text("base: &base {a: 1, b: 2}\nuse:\n  <<: *base\n  b: 3\nagain: *base\n")
    assert read_yaml(path) == {"base": {"a": 1, "b": 2}, "use": {"a": 1, "b": 3}, "again": {"a": 1, "b": 2}}


def test_a_merge_key_overriding_a_merged_key_is_not_a_duplicate(tmp_path: Path):
    path = tmp_path / "x.yml"
    path.write_text("a: &a {x: 1}\nb:\n  <<: *a\n  x: 2\n")
    assert read_yaml(path)["b"] == {"x": 2}


def test_a_fifo_is_not_read(tmp_path: Path):
    import os

    fifo = tmp_path / "x.yml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        read_yaml(fifo)


@pytest.mark.parametrize(
    ("package", "user", "unit"),
    [
        ("acme.tools", "acme-tools", "acme.tools"),
        ("g++-runner", "g---runner", "g---runner"),
        ("0ad", "_0ad", "0ad"),
        ("a" * 40, "a" * 32, "a" * 40),
    ],
)
def test_valid_debian_names_derive_valid_user_and_unit_names(package: str, user: str, unit: str):
    assert system_user(package) == user
    assert unit_name(package) == unit


def test_a_package_named_with_a_dot_builds(tmp_path: Path):
    from baker import package
    from tests.conftest import copy_project, need_tools

    need_tools("dpkg-deb")
    project_dir = copy_project(tmp_path, "examples")
    text = (project_dir / "baker.yml").read_text().replace("package: hello-web", "package: acme.tools")
    (project_dir / "baker.yml").write_text(text)
    project = load_project(project_dir)
    assert (project.app.deb.user, project.app.deb.service) == ("acme-tools", "acme.tools")
    pkg = package.build(project, tmp_path / "out", allow_dirty=True)
    assert pkg.package == "acme.tools" and pkg.path.is_file()


def test_secret_reference_errors_never_echo_the_reference(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("HUNTER2_LOOKS_LIKE_A_NAME", raising=False)
    with pytest.raises(UsageError) as exc:
        SecretRef(env="HUNTER2_LOOKS_LIKE_A_NAME").resolve()
    assert "HUNTER2" not in exc.value.message and "bake.vault_password" in exc.value.message
    with pytest.raises(UsageError) as exc:
        SecretRef(file="hunter2-in-the-wrong-place").resolve(tmp_path)
    assert "hunter2" not in exc.value.message and "cannot be read" in exc.value.message


def test_config_show_redacts_secret_named_ansible_vars(tmp_path: Path):
    project = make_project(tmp_path, Case("ok", {}, ()))
    with (project / "environments/dev.yml").open("a") as f:
        f.write(f"bake:\n  ansible_vars:\n    db_password: {SECRET}\n    hello_port: 8081\n")
    env = load_project(project).environment("dev")
    shown = redacted(env)
    assert shown["bake"]["ansible_vars"] == {"db_password": "<redacted>", "hello_port": 8081}
    code, out, _ = run(project, "--output", "json", "config", "show", "-e", "dev")
    assert code == 0 and SECRET not in out
