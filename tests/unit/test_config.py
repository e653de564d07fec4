"""Configuration: the merge rule, and errors that name file, key path and value."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from baker.cli import main
from baker.config import load_project, merge
from baker.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "baker.yml", tmp_path / "baker.yml")
    shutil.copytree(REPO / "environments", tmp_path / "environments")
    return tmp_path


def run(project: Path, *args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--project", str(project), *args])
    return code, out.getvalue(), err.getvalue()


def test_merge_rule_mappings_deep_scalars_and_lists_from_env_win():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1, "c": {"k": "v"}}
    over = {"a": {"y": [3]}, "b": None, "d": 2}
    assert merge(base, over) == {"a": {"x": 1, "y": [3]}, "b": None, "c": {"k": "v"}, "d": 2}


def test_environment_values_override_defaults(project: Path):
    env = load_project(project).environment("prod")
    assert env.settings.aws.region == "us-west-2"
    assert env.settings.deploy.min_healthy_percent == 90
    # from defaults, untouched by prod.yml
    assert env.settings.bake.instance_type == "t3.micro"
    # ansible_vars is a mapping: merged, not replaced
    assert env.settings.bake.ansible_vars == {"hello_port": 8080}
    assert env.settings.runtime.env == {"HELLO_GREETING": "hello from prod"}


def test_unknown_key_is_named_with_its_file(project: Path):
    with (project / "environments/dev.yml").open("a") as f:
        f.write("bake_settings:\n  instance: big\n")
    code, out, err = run(project, "config", "show", "-e", "dev")
    assert code == 2
    assert "environments/dev.yml" in err and "bake_settings" in err and "unknown key" in err
    assert out == ""


def test_nested_unknown_key_names_the_key_path(project: Path):
    text = (
        (project / "environments/defaults.yml")
        .read_text()
        .replace("  ssh_username: admin", "  ssh_user: admin")
    )
    (project / "environments/defaults.yml").write_text(text)
    code, _, err = run(project, "config", "show", "-e", "staging")
    assert code == 2
    assert "environments/defaults.yml: bake.ssh_user: unknown key" in err


def test_wrong_type_names_file_key_and_value(project: Path):
    text = (
        (project / "environments/prod.yml")
        .read_text()
        .replace("min_healthy_percent: 90", "min_healthy_percent: lots")
    )
    (project / "environments/prod.yml").write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_project(project).environment("prod")
    assert "prod.yml: deploy.min_healthy_percent" in exc.value.message
    assert '"lots"' in exc.value.message


def test_bad_value_blamed_on_the_file_that_set_it(project: Path):
    text = (
        (project / "environments/defaults.yml")
        .read_text()
        .replace('account_id: "123456789012"', 'account_id: "12345"')
    )
    (project / "environments/defaults.yml").write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_project(project).environment("dev")
    assert "defaults.yml: aws.account_id" in exc.value.message and "12345" in exc.value.message


def test_missing_required_value(project: Path):
    text = (project / "environments/defaults.yml").read_text().replace("  region: us-east-1\n", "")
    (project / "environments/defaults.yml").write_text(text)
    (project / "environments/dev.yml").write_text(
        (project / "environments/dev.yml").read_text().replace("aws:\n  region: us-east-1\n", "")
    )
    with pytest.raises(
        ConfigError,
        match=r"defaults\.yml: aws\.region: required key is missing \(add it here, or in .*dev\.yml\)",
    ):
        load_project(project).environment("dev")


def test_unknown_environment_lists_the_known_ones(project: Path):
    code, out, err = run(project, "--output", "json", "config", "show", "-e", "qa")
    assert code == 2
    result = json.loads(out)
    assert result["known"] == ["dev", "dev-layered", "prod", "staging"]
    assert "unknown environment 'qa'; known: dev, dev-layered, prod, staging" in err


def test_invalid_yaml_names_the_line(project: Path):
    (project / "environments/dev.yml").write_text("aws:\n  region: [us-east-1\n")
    with pytest.raises(ConfigError, match=r"dev\.yml:\d+:\d+: invalid YAML"):
        load_project(project).environment("dev")


def test_promote_from_must_name_an_environment(project: Path):
    with (project / "environments/staging.yml").open("a") as f:
        f.write("")
    text = (project / "environments/staging.yml").read_text().replace("promote_from: dev", "promote_from: qa")
    (project / "environments/staging.yml").write_text(text)
    with pytest.raises(ConfigError, match="promote_from: unknown environment 'qa'"):
        load_project(project).environment("staging")


def test_bad_project_file(project: Path):
    text = (project / "baker.yml").read_text().replace("package: hello-web", "package: Hello_Web")
    (project / "baker.yml").write_text(text)
    code, _, err = run(project, "config", "show", "-e", "dev")
    assert code == 2
    assert "baker.yml: app.deb.package" in err and "Hello_Web" in err


def test_missing_project_file(tmp_path: Path):
    code, _, err = run(tmp_path, "config", "show", "-e", "dev")
    assert code == 2 and "baker.yml: not found" in err


def test_config_show_json_is_one_object_with_secret_redacted(project: Path, monkeypatch):
    with (project / "environments/dev.yml").open("a") as f:
        f.write("bake:\n  vault_password:\n    env: HELLO_VAULT_PASS\n")
    monkeypatch.setenv("HELLO_VAULT_PASS", "s3cr3t-value")
    code, out, _ = run(project, "--output", "json", "config", "show", "-e", "dev")
    assert code == 0
    result = json.loads(out)  # exactly one object: json.loads would fail on two
    assert result["env"] == "dev"
    assert result["settings"]["bake"]["vault_password"] == "<secret from env:HELLO_VAULT_PASS>"
    assert "s3cr3t-value" not in out


def test_config_schema_describes_both_files(project: Path):
    code, out, _ = run(project, "--output", "json", "config", "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["environments/<env>.yml"]["additionalProperties"] is False
    assert "app" in schema["baker.yml"]["properties"]
