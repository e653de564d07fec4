"""The renderer: the one quoting filter (checked by Packer's own parser), local vs real AWS,
the required_plugins switch, and StrictUndefined."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from baker import render
from baker.config import Environment, EnvironmentSettings, load_project, merge, read_yaml
from baker.errors import ToolError, UsageError
from tests.conftest import need_tools

REPO = Path(__file__).resolve().parents[2]
SOURCE = render.SourceImage(
    id="ami-0123456789abcdef0", name="debian-12-amd64-test", root_device="/dev/xvda", owner="136693071363"
)

HOSTILE = [
    'say "hi"',
    "back\\slash and trailing \\",
    "line one\nline two\r\n\ttabbed",
    "${var.ami_name}",
    "$${already doubled}",
    "%{ if true }x%{ endif }",
    "%%{ doubled }",
    "$ alone, % alone, {braces}",
    "control \x01\x07\x1b[31m\x7f",
    "unicode é ü 漢字 🚀",
    "private use \ue000 and a tag char \U000e0041",
    '"}\n  ami_users = ["999999999999"]\n  x = {"',
    "",
]


@pytest.fixture
def project(tmp_path: Path):
    """A copy of the repository's project, so tests may change its files."""
    for name in ("baker.yml",):
        shutil.copy(REPO / name, tmp_path / name)
    for name in ("environments", "packer", "ansible"):
        shutil.copytree(REPO / name, tmp_path / name)
    return load_project(tmp_path)


def environment(project, name: str = "dev", **bake: Any) -> Environment:
    """The project's environment with bake settings changed (the merge rule of config.py)."""
    data = merge(
        read_yaml(project.root / "environments" / "defaults.yml"),
        read_yaml(project.root / "environments" / f"{name}.yml"),
    )
    data = merge(data, {"bake": bake})
    return Environment(name=name, settings=EnvironmentSettings.model_validate(data), files=[])


def rendered_text(project, env: Environment, *, version=(1, 6, 6), local: str | None = None) -> str:
    context = render.template_context(project, env, source=SOURCE, version=version, local_endpoint=local)
    return render.render_template(project, context)


def packer_eval(
    tmp_path: Path, hcl_files: dict[str, str], expression: str, var_file: str | None = None
) -> Any:
    """Let Packer's own HCL2 parser evaluate an expression: the ground truth of what a value means."""
    for name, text in hcl_files.items():
        (tmp_path / name).write_text(text)
    argv = ["packer", "console"]
    if var_file:
        argv.append(f"-var-file={tmp_path / var_file}")
    argv.append(str(tmp_path / next(iter(hcl_files))))
    from baker import runner

    out = runner.run(
        argv,
        stdin_data=f"jsonencode({expression})\n",
        capture=True,
        echo=False,
        env=render.packer_base_env(),
        timeout=60,
    )
    return json.loads(out.lines[-1])


def write_pair(
    project,
    env: Environment,
    tmp_path: Path,
    *,
    local: str | None = None,
    build_tags: dict[str, str] | None = None,
) -> render.Rendered:
    deb = tmp_path / "hello-web_1.0_all.deb"
    deb.write_bytes(b"not really a deb")
    key = tmp_path / "id_test"
    if local:
        need_tools("ssh-keygen")
        from baker import runner

        runner.output(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    rendered = render.render(
        project, env, source=SOURCE, version=(1, 6, 6), out_dir=tmp_path / "build", local_endpoint=local
    )
    values: dict[str, Any] = {
        "ami_name": render.ami_name("hello-web", "1.0", env.name, "20260101000000"),
        "deb_path": str(deb),
        "deb_file": deb.name,
        "build_id": "test",
        "build_tags": build_tags or {"baker:version": "1.0"},
    }
    if local:
        values.update(ssh_port=2222, ssh_private_key_file=str(key))
    rendered.write_variables(values)
    return rendered


# ---------------------------------------------------------------- the quoting filter


def test_hcl_quotes_scalars_and_containers():
    assert render.hcl("a") == '"a"'
    assert render.hcl(True) == "true"
    assert render.hcl(8) == "8"
    assert render.hcl(None) == "null"
    assert render.hcl(["a", 1]) == '["a", 1]'
    assert render.hcl({"k:1": "v"}) == '{ "k:1" = "v" }'
    assert render.hcl("${x} %{y}") == '"$${x} %%{y}"'
    assert render.hcl('"\\\n\r\t\x01') == '"\\"\\\\\\n\\r\\t\\u0001"'


@pytest.mark.parametrize("value", [float("nan"), object()])
def test_hcl_refuses_what_it_cannot_write(value):
    with pytest.raises(UsageError):
        render.hcl(value)


def test_hostile_values_mean_themselves_to_packer(tmp_path):
    need_tools("packer")
    lines = [f"  v{i} = {render.hcl(value)}" for i, value in enumerate(HOSTILE)]
    lines.append(f"  keys = {render.hcl({value: str(i) for i, value in enumerate(HOSTILE) if value})}")
    hcl_file = "locals {\n" + "\n".join(lines) + "\n}\n"
    got = packer_eval(
        tmp_path,
        {"values.pkr.hcl": hcl_file},
        "[" + ", ".join(f"local.v{i}" for i in range(len(HOSTILE))) + "]",
    )
    assert got == HOSTILE
    keys = packer_eval(tmp_path, {"values.pkr.hcl": hcl_file}, "local.keys")
    assert keys == {value: str(i) for i, value in enumerate(HOSTILE) if value}


def test_hostile_tags_reach_packer_byte_for_byte_and_change_nothing_else(project, tmp_path):
    need_tools("packer")
    env_tags = {f"k{i}{value}"[:120]: value for i, value in enumerate(HOSTILE)}
    env = environment(project, tags=env_tags, ansible_vars={"hello_greeting": HOSTILE[11]})
    build_tags = {"baker:version": "1.0", "baker:ci-url": 'https://ci/${x}/%{y}"\n'}
    pair = write_pair(project, env, tmp_path, build_tags=build_tags)
    render.validate(pair.template, pair.variables, cwd=project.root)
    tags = packer_eval(
        tmp_path,
        {"t.pkr.hcl": pair.text, "v.pkrvars.hcl": pair.variables.read_text()},
        "local.tags",
        var_file="v.pkrvars.hcl",
    )
    assert tags == {"team": "platform", **env_tags, **build_tags}
    # the injected `ami_users = [...]` stayed inside its string
    assert "ami_users       = []" in pair.text


def test_a_value_printed_without_the_filter_is_refused():
    with pytest.raises(UsageError, match=r"without the \|hcl filter"):
        render.render_text("x = {{ name }}", {"name": 'evil" }'})
    assert render.render_text("x = {{ name|hcl }}", {"name": 'a"b'}) == 'x = "a\\"b"'


def test_strict_undefined_names_the_missing_value():
    with pytest.raises(UsageError, match="'region' is undefined"):
        render.render_text("region = {{ region|hcl }}", {})
    with pytest.raises(UsageError, match="has no attribute 'id'"):
        render.render_text("x = {{ source.id|hcl }}", {"source": {}})


# ---------------------------------------------------------------- the template


def test_real_aws_template_has_no_local_settings(project, tmp_path):
    need_tools("packer")
    env = environment(project)
    pair = write_pair(project, env, tmp_path)
    render.validate(pair.template, pair.variables, cwd=project.root)
    for local_only in ("custom_endpoint_ec2", "ssh_host", "ssh_port", "skip_region_validation"):
        assert local_only not in pair.text
    assert "source_ami_filter" in pair.text
    assert '"debian-12-amd64-*"' in pair.text


def test_local_template_points_packer_at_the_emulator_and_loopback(project, tmp_path):
    need_tools("packer")
    env = environment(project)
    pair = write_pair(project, env, tmp_path, local="http://127.0.0.1:5000")
    render.validate(pair.template, pair.variables, cwd=project.root)
    assert 'custom_endpoint_ec2         = "http://127.0.0.1:5000"' in pair.text
    assert 'ssh_host                    = "127.0.0.1"' in pair.text
    assert "ssh_port                    = var.ssh_port" in pair.text
    assert '\\"baker_apt_update\\":false' in pair.text
    # the local cloud differs only in additions (and apt staying offline): nothing real is lost
    real = [line for line in rendered_text(project, env).splitlines() if "baker_app" not in line]
    assert [line for line in real if line not in pair.text.splitlines()] == []


def test_required_plugins_only_for_packer_1_7_and_later(project):
    env = environment(project)
    assert "required_plugins" not in rendered_text(project, env, version=(1, 6, 6))
    assert "required_plugins" in rendered_text(project, env, version=(1, 7, 0))
    assert "required_plugins" in rendered_text(project, env, version=(1, 11, 2))


def test_packer_1_6_rejects_required_plugins_which_is_why_it_is_switched(project, tmp_path):
    need_tools("packer")
    if render.packer_version() >= render.REQUIRED_PLUGINS_SINCE:
        pytest.skip("the installed packer is >= 1.7")
    env = environment(project)
    pair = write_pair(project, env, tmp_path)
    pair.template.write_text(rendered_text(project, env, version=(1, 7, 0)))
    with pytest.raises(ToolError) as err:
        render.validate(pair.template, pair.variables, cwd=project.root)
    assert err.value.exit_code == 3
    assert any("packer" in line or "required_plugins" in line for line in err.value.output_tail)


def test_source_ami_by_id_and_encryption_with_kms_key(project):
    env = environment(
        project,
        source_ami={"id": "ami-0abcdef1234567890", "filter": None},
        kms_key_id="arn:aws:kms:us-east-1:123456789012:key/abc",
        copy_to_regions=["eu-west-1"],
        share_with_accounts=["210987654321"],
        subnet_id="subnet-1",
        vpc_id="vpc-1",
    )
    text = rendered_text(project, env)
    assert 'source_ami    = "ami-0abcdef1234567890"' in text
    assert "source_ami_filter" not in text
    assert 'kms_key_id            = "arn:aws:kms:us-east-1:123456789012:key/abc"' in text
    assert "encrypted             = true" in text
    assert 'ami_regions     = ["eu-west-1"]' in text
    assert 'ami_users       = ["210987654321"]' in text
    assert 'subnet_id     = "subnet-1"' in text


def test_vault_file_adds_the_password_client_never_the_password(project, monkeypatch, tmp_path):
    need_tools("packer")
    monkeypatch.setenv("TEST_VAULT_PASS", "s3cret-never-rendered")
    env = environment(
        project, vault_file="ansible/vars/secrets.example.yml", vault_password={"env": "TEST_VAULT_PASS"}
    )
    text = rendered_text(project, env)
    pair = write_pair(project, env, tmp_path)
    render.validate(pair.template, pair.variables, cwd=project.root)
    # the client gets this build's id as its --vault-id label (a Packer variable: no environment)
    assert '"--vault-id", join("@", [var.build_id, "ansible/vault-pass-client.py"])' in text
    assert "vault-password-file" not in text
    assert '"@ansible/vars/secrets.example.yml"' in text
    assert "s3cret-never-rendered" not in text


def test_the_template_holds_no_absolute_project_paths(project):
    """The same commit renders the same template on every CI runner, wherever it is checked out."""
    assert str(project.root) not in rendered_text(project, environment(project))


def test_ami_name_is_what_ec2_accepts():
    assert (
        render.ami_name("hello-web", "1.2.0~3.gabc+dirty", "dev", "20260101120000")
        == "hello-web-1.2.0-3.gabc-dirty-dev-20260101120000"
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Packer v1.6.6\n", (1, 6, 6)),
        ("Packer v1.11.2\n\nYour version of Packer is out of date!", (1, 11, 2)),
        ("1.9.4", None),
    ],
)
def test_packer_version_is_read_from_its_output(text, expected):
    if expected is None:
        with pytest.raises(ToolError):
            render.parse_packer_version(text)
    else:
        assert render.parse_packer_version(text) == expected


def test_installed_packer_version_is_detected():
    need_tools("packer")
    assert render.packer_version() >= (1, 0, 0)


def test_packer_validate_failure_is_a_tool_error_with_packers_words(project, tmp_path):
    need_tools("packer")
    pair = write_pair(project, environment(project), tmp_path)
    pair.template.write_text(pair.text.replace("instance_type =", "instance_typo ="))
    with pytest.raises(ToolError) as err:
        render.validate(pair.template, pair.variables, cwd=project.root)
    assert err.value.exit_code == 3
    assert "instance_typo" in "\n".join(err.value.output_tail)


def test_packer_version_is_remembered_per_binary(tmp_path):
    need_tools("packer")
    first = render.packer_version(cache_dir=tmp_path)
    memo = json.loads((tmp_path / "packer-version.json").read_text())
    assert tuple(memo["version"]) == first
    # a remembered answer is used while the binary is the same one...
    (tmp_path / "packer-version.json").write_text(json.dumps({**memo, "version": [9, 9, 9]}))
    assert render.packer_version(cache_dir=tmp_path) == (9, 9, 9)
    # ...and not once it names another binary
    (tmp_path / "packer-version.json").write_text(json.dumps({"key": "elsewhere", "version": [9, 9, 9]}))
    assert render.packer_version(cache_dir=tmp_path) == first
