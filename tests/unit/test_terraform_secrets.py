"""Secret-bearing Terraform variables are never shown: not by baker (messages, logs, JSON), not in
Terraform's output that baker relays or keeps, not on a command line, not in a child's environment.

Secret-bearing: a ``deploy.variables`` key whose path says password, secret, token, credential,
private key or API key (``config.secret_bearing``, the rule of every other secret in baker), and
the value a ``{env: NAME}`` / ``{file: PATH}`` reference under such a key names. The real
Terraform runs a module of only variables and outputs (no provider, no network).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from baker import runner
from baker import terraform as tf
from baker.cli import main
from baker.config import load_project, redacted, resolve_secret_refs, secret_refs, withheld_variables
from baker.deploy import Handoff
from baker.errors import ToolError, UsageError
from tests.conftest import copy_project, need_tools

SECRET = 'db-pw-"quoted"-\\-7731'  # a quote and a backslash: Terraform and JSON escape them
VAR = "BAKER_TEST_DB_PASSWORD"
MODULE = """
variable "db_password" {
  type = string
  validation {
    condition     = length(var.db_password) > 10
    error_message = "The password is too short."
  }
}
variable "tags" {
  type    = map(string)
  default = {}
}
output "echo" {
  value = var.db_password
}
output "tags" {
  value = var.tags
}
"""


def with_variables(project_dir: Path, text: str) -> Path:
    """``text`` (a `deploy:` mapping) merged into dev.yml's own."""
    path = project_dir / "environments/dev.yml"
    data = yaml.safe_load(path.read_text())
    data.setdefault("deploy", {}).setdefault("variables", {}).update(
        yaml.safe_load(text)["deploy"]["variables"]
    )
    path.write_text(yaml.safe_dump(data))
    return project_dir


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    return copy_project(tmp_path, "environments")


def run_cli(project: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--project", str(project), *args])
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- which values are secret


def test_a_reference_under_a_secret_name_is_read_at_deploy_and_a_map_elsewhere_stays_data(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    with_variables(
        project_dir,
        f"deploy:\n  variables:\n    db_password:\n      env: {VAR}\n    tags:\n      env: prod\n"
        "      api_token:\n        file: token.txt\n",
    )
    (project_dir / "token.txt").write_text("tok-from-a-file-0042\n")
    monkeypatch.setenv(VAR, SECRET)
    env = load_project(project_dir).environment("dev")
    variables = env.settings.deploy.variables
    assert [loc for loc, _ in secret_refs(variables)] == [
        ("deploy", "variables", "db_password"),
        ("deploy", "variables", "tags", "api_token"),
    ]
    resolved = resolve_secret_refs(variables, project_dir)
    assert resolved["db_password"] == SECRET
    assert resolved["tags"] == {"env": "prod", "api_token": "tok-from-a-file-0042"}
    # the variable the reference names reaches no child; config show says where, never what
    assert VAR in withheld_variables(env)
    shown = redacted(env)["deploy"]["variables"]
    assert shown["db_password"] == f"<secret from env:{VAR}>"
    assert shown["tags"] == {"env": "prod", "api_token": "<secret from file:token.txt>"}


def test_a_bad_reference_is_refused_at_load_naming_the_key_not_the_value(project_dir: Path):
    with_variables(
        project_dir, "deploy:\n  variables:\n    db_password:\n      env: 'hunter2 Sup3r s3cret'\n"
    )
    code, out, err = run_cli(project_dir, "config", "show", "-e", "dev")
    assert code == 2, err
    assert "deploy.variables.db_password: must name an environment variable" in err
    assert "hunter2" not in out + err


def test_an_unset_reference_is_refused_naming_the_key(project_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(VAR, raising=False)
    with_variables(project_dir, f"deploy:\n  variables:\n    db_password:\n      env: {VAR}\n")
    env = load_project(project_dir).environment("dev")
    with pytest.raises(UsageError, match=r"deploy\.variables\.db_password: the environment variable"):
        resolve_secret_refs(env.settings.deploy.variables, project_dir)


def test_the_handoff_names_the_secret_values_terraform_must_mask(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(VAR, SECRET)
    with_variables(
        project_dir,
        f"deploy:\n  variables:\n    db_password:\n      env: {VAR}\n    github_token: ghp-literal-0099\n"
        "    instance_type: t3.small\n",
    )
    project = load_project(project_dir)
    handoff = Handoff(project, project.environment("dev"), _AWS(), local=False, terraform=None)  # type: ignore[arg-type]
    variables = handoff.variables("ami-0123456789abcdef0", {})
    assert variables["db_password"] == SECRET and variables["instance_type"] == "t3.small"
    assert sorted(handoff.secrets(variables)) == sorted([SECRET, "ghp-literal-0099"])


class _AWS:
    region = "us-east-1"


# ---------------------------------------------------------------- the real Terraform


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own temporary directory, where Terraform's private run directories go."""
    where = tmp_path / "tmp"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


@pytest.fixture
def module(tmp_path: Path, private_tmp: Path) -> tf.Terraform:
    need_tools("terraform")
    source = tmp_path / "module"
    source.mkdir()
    (source / "main.tf").write_text(MODULE)
    work = tmp_path / "work"
    t = tf.Terraform(module_dir=source, work_dir=work, timeout=60, env={"CHECKPOINT_DISABLE": "1"})
    t.init()
    return t


def everything_kept(t: tf.Terraform, caplog: pytest.LogCaptureFixture) -> str:
    """What baker logged, and every file left in the working directory."""
    files = [p.read_bytes().decode(errors="replace") for p in t.work_dir.rglob("*") if p.is_file()]
    return caplog.text + "\n".join(files)


def test_terraform_failing_on_a_secret_shows_its_words_not_the_value(
    module: tf.Terraform, caplog: pytest.LogCaptureFixture, tmp_path: Path
):
    """Terraform quotes the bad value (`var.db_password is "..."`) and the var file's line."""
    caplog.set_level(logging.DEBUG, logger="baker")
    short = "shortpw"
    with pytest.raises(ToolError) as info:
        module.plan({"db_password": short}, secrets=[short])
    message = str(info.value) + json.dumps(info.value.details)
    assert "Invalid value for variable" in message and "The password is too short." in message
    assert short not in message and short not in everything_kept(module, caplog)
    assert not list(Path(tempfile.gettempdir()).iterdir()), "the private directory went with the failed plan"


def test_what_a_killed_run_left_is_removed_by_the_next_plan(module: tf.Terraform, private_tmp: Path):
    prefix = module._private_prefix()
    killed = Path(tempfile.mkdtemp(prefix=f"{prefix}{_ended_pid()}-"))  # as a baker killed after its plan
    (killed / "baker.tfvars.json").write_text('{"db_password": "x"}')
    old = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))  # alive, but older than the timeout
    os.utime(old, (time.time() - module.timeout - 5,) * 2)
    live = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getppid()}-"))  # a run of a live baker, going on now
    other = Path(tempfile.mkdtemp(prefix=f"baker-terraform-0123456789ab-{_ended_pid()}-"))  # another env's
    module.discard(module.plan({"db_password": "long-enough-pw"}))
    assert not killed.exists() and not old.exists() and live.exists() and other.exists()


def _ended_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_plan_and_apply_with_a_secret_variable_never_show_it(
    module: tf.Terraform, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    caplog.set_level(logging.DEBUG, logger="baker")  # `-v -v`: Terraform's plan lines are logged
    seen: dict[str, Any] = {}
    real_run = runner.run

    def spy(argv: Any, **kw: Any) -> runner.Result:
        if "plan" in argv:
            var_file = Path(next(a for a in argv if a.startswith("-var-file=")).split("=", 1)[1])
            seen.update(
                argv=list(argv),
                env=dict(kw["env"]),
                var_dir_mode=stat.S_IMODE(var_file.parent.stat().st_mode),
                var_file_mode=stat.S_IMODE(var_file.stat().st_mode),
                var_dir=var_file.parent,
            )
        return real_run(argv, **kw)

    monkeypatch.setattr(runner, "run", spy)
    plan = module.plan({"db_password": SECRET, "tags": {"api_token": "tok-0042-abcd"}}, secrets=[SECRET])
    # the var file sat in a private directory outside the build folder, and went with the plan
    assert seen["var_dir_mode"] == 0o700 and seen["var_file_mode"] == 0o600
    assert module.work_dir not in seen["var_dir"].parents
    assert plan.path.parent == seen["var_dir"] and not (seen["var_dir"] / "baker.tfvars.json").exists()
    assert not [a for a in seen["argv"] if SECRET in a] and SECRET not in json.dumps(seen["env"])
    module.apply(plan)
    assert not seen["var_dir"].exists(), "the plan's private directory is removed after the apply"
    outputs = module.outputs()
    assert outputs["echo"] == "***"  # even an output that echoes it comes back masked
    assert SECRET not in everything_kept(module, caplog).replace(  # Terraform's state is the module's
        _state(module), ""
    )
    assert "[terraform plan]" in caplog.text and "***" in caplog.text


def _state(t: tf.Terraform) -> str:
    state = t.work_dir / "terraform.tfstate"
    return state.read_text() if state.is_file() else ""
