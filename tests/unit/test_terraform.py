"""The Terraform wrapper's pure parts: argument lists, backend settings, CLI config, diagnostics."""

from __future__ import annotations

import json
import logging
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from baker import hcl
from baker import terraform as tf
from baker import terraform_lines as tfl
from baker.config import BackendSettings
from baker.errors import ToolError, UsageError
from tests.conftest import need_tools


def test_init_passes_every_backend_setting_and_never_prompts():
    argv = tf.init_argv("terraform", "/w/dev", {"bucket": "b", "key": "app/dev.tfstate"})
    assert argv[:3] == ["terraform", "-chdir=/w/dev", "init"]
    assert "-input=false" in argv and "-no-color" in argv and "-reconfigure" in argv
    assert argv[-2:] == ["-backend-config=bucket=b", "-backend-config=key=app/dev.tfstate"]


def test_init_without_backend_has_no_backend_config():
    assert not [a for a in tf.init_argv("tofu", "w") if a.startswith("-backend-config")]
    assert tf.init_argv("tofu", "w")[0] == "tofu"


def test_plan_writes_a_saved_plan_from_a_var_file_only():
    argv = tf.plan_argv("terraform", "/w", var_file="v.tfvars.json", out="baker.tfplan")
    assert argv[:3] == ["terraform", "-chdir=/w", "plan"]
    assert "-var-file=v.tfvars.json" in argv and "-out=baker.tfplan" in argv
    assert "-input=false" in argv
    # variables never on the command line
    assert not [a for a in argv if a.startswith("-var=")]


def test_apply_applies_the_saved_plan_as_json_lines():
    argv = tf.apply_argv("terraform", "/w", "baker.tfplan")
    assert argv[:3] == ["terraform", "-chdir=/w", "apply"]
    assert argv[-1] == "baker.tfplan"
    assert "-json" in argv and "-input=false" in argv
    assert "-auto-approve" not in argv  # a saved plan needs no approval


def test_show_and_output_are_json():
    assert tf.show_argv("terraform", "/w", "p") == [
        "terraform",
        "-chdir=/w",
        "show",
        "-json",
        "-no-color",
        "p",
    ]
    assert tf.output_argv("terraform", "/w") == ["terraform", "-chdir=/w", "output", "-json", "-no-color"]


def test_backend_config_for_real_aws_has_no_emulator_switches():
    cfg = tf.backend_config(BackendSettings(bucket="b", key="k"), region="eu-west-1")
    assert cfg == {"bucket": "b", "key": "k", "region": "eu-west-1", "use_lockfile": "true"}


def test_backend_config_for_the_local_cloud_points_at_the_emulator():
    cfg = tf.backend_config(
        BackendSettings(bucket="b", key="k", region="us-west-2"),
        region="us-east-1",
        endpoint="http://127.0.0.1:5000",
    )
    assert cfg["region"] == "us-west-2"
    assert cfg["use_path_style"] == "true"
    assert cfg["skip_credentials_validation"] == "true"
    assert cfg["endpoints"] == '{s3="http://127.0.0.1:5000"}'


def test_cli_config_takes_mirrored_providers_from_the_mirror_only(tmp_path: Path):
    (tmp_path / "registry.terraform.io" / "hashicorp" / "aws" / "5.100.0").mkdir(parents=True)
    providers = tf.mirror_providers(tmp_path)
    assert providers == ["registry.terraform.io/hashicorp/aws"]
    text = tf.cli_config(tmp_path, providers)
    assert f'path    = "{tmp_path}"' in text
    assert 'include = ["registry.terraform.io/hashicorp/aws"]' in text
    assert 'exclude = ["registry.terraform.io/hashicorp/aws"]' in text


def test_a_configured_mirror_must_exist(tmp_path: Path):
    assert tf.find_mirror(str(tmp_path)) == tmp_path
    with pytest.raises(UsageError, match="plugin_mirror"):
        tf.find_mirror(str(tmp_path / "missing"))


def test_text_diagnostics_become_one_line_each():
    out = [
        "╷",
        "│ Error: Invalid value for variable",
        "│ ",
        "│   on variables.tf line 11:",
        '│   11: variable "image_id" {',
        "│ ",
        "│ The image_id must be an AMI id (ami-...).",
        "╵",
        "Error: No valid credential sources found",
    ]
    assert tfl.text_diagnostics(out) == [
        "Invalid value for variable: The image_id must be an AMI id (ami-...).",
        "No valid credential sources found",
    ]


def test_json_diagnostic_picks_errors_only():
    err = json.dumps(
        {
            "@level": "error",
            "@message": "Error: boom",
            "type": "diagnostic",
            "diagnostic": {
                "severity": "error",
                "summary": "creating ELBv2 Load Balancer",
                "detail": "AccessDenied:\n  not allowed",
                "address": "aws_lb.this",
            },
        }
    )
    assert tfl.json_diagnostic(err) == "aws_lb.this: creating ELBv2 Load Balancer: AccessDenied: not allowed"
    assert tfl.json_diagnostic(json.dumps({"@level": "info", "@message": "x"})) is None
    assert tfl.json_diagnostic("not json") is None


def test_progress_shows_resource_lines_not_version_chatter():
    start = json.dumps({"@message": "aws_lb.this: Creating...", "type": "apply_start"})
    version = json.dumps({"@message": "Terraform 1.11.4", "type": "version"})
    assert tfl.progress_message(start) == "aws_lb.this: Creating..."
    assert tfl.progress_message(version) is None


def test_var_file_is_private_and_removed(tmp_path: Path):
    t = tf.Terraform(module_dir=tmp_path, work_dir=tmp_path)
    with t.var_file({"image_id": "ami-12345678"}) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text()) == {"image_id": "ami-12345678"}
    assert not path.exists()


def test_each_environment_gets_its_own_working_copy(tmp_path: Path, repo: Path):
    dev = tf.Terraform(module_dir=repo / "terraform", work_dir=tmp_path / "dev", mirror=tmp_path)
    prod = tf.Terraform(module_dir=repo / "terraform", work_dir=tmp_path / "prod")
    dev.prepare()
    prod.prepare()
    assert (tmp_path / "dev" / "asg.tf").read_text() == (repo / "terraform" / "asg.tf").read_text()
    assert dev.environ()["TF_DATA_DIR"] == str(tmp_path / "dev" / ".terraform")
    assert prod.environ()["TF_DATA_DIR"] == str(tmp_path / "prod" / ".terraform")
    assert dev.environ()["TF_IN_AUTOMATION"] == "1"
    assert dev.environ()["TF_CLI_CONFIG_FILE"] == str(tmp_path / "dev" / tf.CLI_CONFIG)
    # no backend configured: local state, written as an override in the working copy only
    assert (tmp_path / "prod" / tf.BACKEND_OVERRIDE).is_file()
    assert not (repo / "terraform" / tf.BACKEND_OVERRIDE).exists()


def test_terraform_own_words_become_the_error(tmp_path: Path, repo: Path):
    need_tools("terraform")
    mirror = tf.find_mirror(None)
    if mirror is None:
        pytest.skip("no Terraform provider mirror on this machine (/opt/tf-plugins)")
    t = tf.Terraform(
        module_dir=repo / "terraform",
        work_dir=tmp_path / "w",
        mirror=mirror,
        timeout=60,
        env={"AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"},
    )
    t.init()
    with pytest.raises(ToolError) as info:
        t.plan({"image_id": "ami-12345678"})  # "name" is required
    assert info.value.exit_code == 3
    assert (
        'No value for required variable: The root module input variable "name" is not set'
        in info.value.message
    )
    assert not list((tmp_path / "w").glob("*.tfvars.json")), "the var file is gone after a failed plan"


def test_a_held_state_lock_is_named_with_what_to_do():
    from baker.terraform_lines import state_lock_id

    said = [
        "╷",
        "│ Error: Error acquiring the state lock",
        "│ ",
        "│ Error message: operation error S3: PutObject, https response error StatusCode: 412",
        "│ Lock Info:",
        "│   ID:        3f0c1e0a-2b1c-4d6e-9f10-0a1b2c3d4e5f",
        "│   Path:      baker-tfstate-123456789012/hello-web/dev.tfstate",
        "│   Operation: OperationTypeApply",
        "╵",
    ]
    assert state_lock_id(said) == "3f0c1e0a-2b1c-4d6e-9f10-0a1b2c3d4e5f"
    assert state_lock_id(["Error: Invalid provider configuration"]) is None


def counting(t: tf.Terraform) -> list[str]:
    """The Terraform commands ``t`` runs from now on, by name."""
    calls: list[str] = []
    run = t._run

    def counted(what: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(what)
        return run(what, *args, **kwargs)

    t._run = counted  # type: ignore[method-assign]
    return calls


def test_outputs_come_from_the_apply_and_are_read_once_per_state(tmp_path: Path):
    need_tools("terraform")
    module = tmp_path / "m"
    module.mkdir()
    (module / "main.tf").write_text(
        'variable "v" {}\noutput "x" {\n  value = var.v\n}\noutput "n" {\n  value = null\n}\n'
    )
    t = tf.Terraform(module_dir=module, work_dir=tmp_path / "w", timeout=60)
    calls = counting(t)
    t.init()
    assert t.outputs() == {}, "before the first apply"
    t.apply(t.plan({"v": "one"}))
    assert t.outputs() == {"x": "one"}
    assert calls.count("output") == 1, calls
    t.apply(t.plan({"v": "two"}))
    assert t.outputs() == {"x": "two"}, "what the apply said"
    assert calls.count("output") == 1, calls
    fresh = tf.Terraform(module_dir=module, work_dir=tmp_path / "w", timeout=60)
    assert fresh.outputs() == t.outputs(), "the apply's outputs are what terraform output says"
    (module / "main.tf").write_text(
        'variable "v" {}\noutput "x" {\n  value     = var.v\n  sensitive = true\n}\n'
    )
    t.prepare()
    t.apply(t.plan({"v": "three"}))
    assert t.outputs() == {"x": "three"}, "a sensitive output is read from the state"
    assert calls.count("output") == 2, calls


def test_init_runs_again_only_when_what_it_depends_on_changed(tmp_path: Path):
    need_tools("terraform")
    module = tmp_path / "m"
    module.mkdir()
    requires = 'terraform {\n  required_providers {\n    aws = { source = "hashicorp/aws" }\n  }\n}\n'
    (module / "main.tf").write_text(requires + 'output "x" {\n  value = "a"\n}\n')
    mirror = tf.find_mirror(None)
    assert mirror is not None, "make deps installs the provider mirror"
    t = tf.Terraform(module_dir=module, work_dir=tmp_path / "w", timeout=60, mirror=mirror)
    calls = counting(t)
    t.init()
    assert (tmp_path / "w" / tf.LOCK_FILE).is_file(), "the first init writes the lock file"
    t.init()
    again = tf.Terraform(module_dir=module, work_dir=tmp_path / "w", timeout=60, mirror=mirror)
    again_calls = counting(again)
    again.init()
    assert (calls.count("init"), again_calls) == (1, []), "the same module and backend: initialized already"
    (module / "main.tf").write_text(requires + 'output "x" {\n  value = "b"\n}\n')
    t.prepare()
    t.init()
    assert calls.count("init") == 2, "a changed module is initialized again"
    (tmp_path / "w" / ".terraform" / tf.INIT_STAMP).write_text("left by another version\n")
    t.init()
    assert calls.count("init") == 3


def test_a_plan_without_detail_names_the_changes_show_names(tmp_path: Path):
    """The plan the gate alone reads (``detail=False``: the plan's own JSON lines, no ``show``)
    names each change with the address, type, actions and reason ``show -json`` gives."""
    need_tools("terraform")
    module = tmp_path / "m"
    module.mkdir()
    (module / "main.tf").write_text(
        'variable "v" {}\nvariable "r" {}\n'
        'resource "terraform_data" "kept" {\n  input = var.v\n}\n'
        'resource "terraform_data" "renewed" {\n  triggers_replace = var.r\n}\n'
    )
    t = tf.Terraform(module_dir=module, work_dir=tmp_path / "w", timeout=60)
    t.init()

    def both(variables: dict[str, str]) -> tuple[Any, Any]:
        shown, named = t.plan(variables), t.plan(variables, detail=False)
        t.discard(named)
        return shown, named

    def seen(plan: Any) -> list[tuple[str, str, frozenset[str], str | None]]:
        return sorted((c.address, c.type, frozenset(c.actions), c.reason) for c in plan.changes)

    shown, named = both({"v": "1", "r": "1"})
    assert seen(named) == seen(shown) and shown.counts["create"] == 2
    t.apply(shown)
    shown, named = both({"v": "2", "r": "2"})
    assert seen(named) == seen(shown)
    assert {c.address: c.kind for c in named.changes} == {
        "terraform_data.kept": "update",
        "terraform_data.renewed": "replace",
    }
    t.apply(shown)
    shown, named = both({"v": "2", "r": "2"})
    assert named.empty and shown.empty
    t.discard(shown)
    taint = [t.binary, f"-chdir={t.work_dir}", "taint", "terraform_data.kept"]
    subprocess.run(taint, env=t.environ(), check=True, capture_output=True)
    shown, named = both({"v": "2", "r": "2"})
    assert seen(named) == seen(shown)
    (tainted,) = named.changes
    assert (tainted.kind, tainted.tainted) == ("replace", True)
    t.discard(shown)


def test_the_local_clouds_terraform_runs_the_mirrors_provider_in_place_and_awss_never(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """In the local cloud every command after ``init`` runs the mirror's provider where it is
    (``dev_overrides``: no ~700 MB hash against the lock file per command); init still installs
    from the mirror and writes the lock file. Against AWS the CLI configuration has no override."""
    need_tools("terraform")
    mirror = tf.find_mirror(None)
    assert mirror is not None, "make deps installs the provider mirror"
    module = tmp_path / "m"
    module.mkdir()
    (module / "main.tf").write_text(
        'terraform {\n  required_providers {\n    aws = { source = "hashicorp/aws" }\n  }\n}\n'
        'variable "v" {\n  type = string\n}\noutput "x" {\n  value = var.v\n}\n'
    )
    local = tf.Terraform(
        module_dir=module, work_dir=tmp_path / "local", timeout=120, mirror=mirror, in_place=True
    )
    local.init()
    config = (tmp_path / "local" / tf.CLI_CONFIG).read_text()
    (provider,) = tf.mirror_providers(mirror)
    binary_dir = tf.mirror_in_place(mirror, [provider])[provider]
    assert f"dev_overrides {{\n    {hcl.string(provider)} = {hcl.string(str(binary_dir))}" in config
    assert (tmp_path / "local" / tf.LOCK_FILE).is_file(), "init installed from the mirror as always"
    with caplog.at_level(logging.INFO, logger="baker"):
        local.apply(local.plan({"v": "in place"}))
    assert local.outputs() == {"x": "in place"}
    shown = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not [m for m in shown if "development overrides" in m], shown

    aws = tf.Terraform(module_dir=module, work_dir=tmp_path / "aws", timeout=120, mirror=mirror)
    aws.prepare()
    assert "dev_overrides" not in (tmp_path / "aws" / tf.CLI_CONFIG).read_text()


def test_a_provider_is_run_in_place_only_from_one_unpacked_version_for_this_platform(tmp_path: Path):
    one = tmp_path / "one" / "registry.terraform.io" / "hashicorp" / "aws" / "5.100.0" / tf.platform_dir()
    one.mkdir(parents=True)
    (one / "terraform-provider-aws_v5.100.0_x5").write_bytes(b"")
    two = tmp_path / "two" / "registry.terraform.io" / "hashicorp" / "aws"
    for version in ("5.99.0", "5.100.0"):
        (two / version / tf.platform_dir()).mkdir(parents=True)
        (two / version / tf.platform_dir() / f"terraform-provider-aws_v{version}_x5").write_bytes(b"")
    packed = tmp_path / "packed" / "registry.terraform.io" / "hashicorp" / "aws" / "5.100.0"
    packed.mkdir(parents=True)
    aws = ["registry.terraform.io/hashicorp/aws"]
    assert tf.mirror_in_place(tmp_path / "one", aws) == {aws[0]: one}
    assert tf.mirror_in_place(tmp_path / "two", aws) == {}, "two versions: the lock file chooses"
    assert tf.mirror_in_place(tmp_path / "packed", aws) == {}
    assert "dev_overrides" not in tf.cli_config(tmp_path / "two", aws, {})
