"""Layered images: their configuration, each layer's recipe, the playbook and the argv of a layer,
and the block arithmetic of the snapshot path."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from baker import ebs, layers, recipe, volume
from baker.cli import main
from baker.config import load_project
from baker.errors import ConfigError, UsageError
from baker.preflight import check_project_files

REPO = Path(__file__).resolve().parents[2]
LAYERS = {
    "base": {"roles": ["hardening"]},
    "app": {"roles": ["app_install", "app_config", "app_service", "hardening"]},
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "baker.yml", tmp_path / "baker.yml")
    for part in ("environments", "ansible", "packer", "examples"):
        shutil.copytree(REPO / part, tmp_path / part)
    return tmp_path


def set_bake(project: Path, **values: object) -> Path:
    path = project / "environments" / "defaults.yml"
    data = yaml.safe_load(path.read_text())
    data["bake"].update(values)
    path.write_text(yaml.safe_dump(data))
    return path


def recipe_of(project: Path) -> str:
    p = load_project(project)
    env = p.environment("dev")
    return recipe.digest_for(p, env, deb=project / "baker.yml", template="t", source_ami="ami-1")


def test_a_project_without_layers_keeps_its_recipe(project: Path):
    before = recipe_of(project)
    set_bake(project)  # the same settings written back
    assert recipe_of(project) == before
    set_bake(project, layers=LAYERS)
    assert recipe_of(project) != before  # layers are image settings when set


def test_app_layer_without_layers_is_refused_naming_the_file(project: Path):
    path = set_bake(project, app_layer="snapshot")
    with pytest.raises(ConfigError) as err:
        load_project(project).environment("dev")
    assert str(path) in err.value.message and "app_layer needs layers" in err.value.message


def test_an_unknown_key_or_app_layer_value_is_refused(project: Path):
    set_bake(project, layers={**LAYERS, "extra": {"roles": ["x"]}})
    with pytest.raises(ConfigError, match="extra"):
        load_project(project).environment("dev")
    set_bake(project, layers=LAYERS, app_layer="container")
    with pytest.raises(ConfigError, match="app_layer"):
        load_project(project).environment("dev")


def test_a_role_no_layer_can_find_is_named_with_its_key(project: Path):
    set_bake(project, layers={**LAYERS, "base": {"roles": ["hardenin"]}})
    p = load_project(project)
    with pytest.raises(ConfigError) as err:
        check_project_files(p, p.environment("dev"))
    assert "bake.layers.base.roles" in err.value.message and "hardenin" in err.value.message


def test_the_schema_names_the_layers(project: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["--project", str(project), "config", "schema"]) == 0
    out = capsys.readouterr().out
    assert "app_layer" in out and "Layers" in out


def test_each_layer_has_its_own_recipe(project: Path):
    set_bake(project, layers=LAYERS, app_layer="snapshot")
    p = load_project(project)
    env = p.environment("dev")
    deb = project / "baker.yml"
    base = layers.base_recipe(p, env, template="t", source_ami="ami-1")
    app = layers.app_recipe(p, env, base_ami="ami-2", deb=deb, template="t")
    assert len({base, app, recipe_of(project)}) == 3
    # the base does not move with the app's roles; the app moves with its base
    (project / "ansible/roles/app_install/tasks/main.yml").write_text("- ansible.builtin.meta: noop\n")
    assert layers.base_recipe(p, env, template="t", source_ami="ami-1") == base
    assert layers.app_recipe(p, env, base_ami="ami-2", deb=deb, template="t") != app
    assert layers.app_recipe(p, env, base_ami="ami-3", deb=deb, template="t") != app
    (project / "ansible/roles/hardening/tasks/main.yml").write_text("- ansible.builtin.meta: noop\n")
    assert layers.base_recipe(p, env, template="t", source_ami="ami-1") != base


def test_a_layer_playbook_runs_only_its_roles_in_order():
    play = yaml.safe_load(layers.playbook_text("app", ["app_install", "hardening"]))
    assert play[0]["roles"] == ["app_install", "hardening"] and play[0]["hosts"] == "all"


def test_the_chroot_argv_has_no_secret_and_no_become():
    argv = layers.chroot_argv(
        Path("/b/layer-app.yml"),
        Path("/tmp/r"),
        ["--extra-vars", "{}"],
        deb_file="a.deb",
        version="1.0",
        vault_id="abc@client",
    )
    assert argv[:5] == ["ansible-playbook", "-i", "/tmp/r,", "-c", "community.general.chroot"]
    assert argv[argv.index("--vault-id") + 1] == "abc@client" and argv[-1] == "/b/layer-app.yml"
    assert '"baker_become":false' in argv[-2]


def test_changed_blocks_are_the_512_kib_blocks_that_differ(tmp_path: Path):
    base, work = tmp_path / "base", tmp_path / "work"
    for path in (base, work):
        with path.open("wb") as fh:
            fh.truncate(8 * ebs.BLOCK)
    with work.open("r+b") as fh:
        fh.seek(3 * ebs.BLOCK + 17)
        fh.write(b"x")
        fh.seek(7 * ebs.BLOCK - 1)
        fh.write(b"y")
    assert ebs.changed_blocks(base, work) == [3, 6]


def test_a_block_checksum_is_base64_sha256():
    assert ebs.checksum(b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def test_without_root_the_snapshot_path_stops_before_anything_naming_the_way_out(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(UsageError, match=r"bake\.app_layer: instance"):
        volume.check_runner()


def test_the_app_layer_on_an_instance_is_the_same_template_from_the_base_with_the_app_roles(
    project: Path, tmp_path: Path
):
    from baker import render

    set_bake(project, layers=LAYERS, app_layer="instance")
    p = load_project(project)
    env = p.environment("dev")
    playbook = layers.write_playbook(tmp_path / "app", "app", LAYERS["app"]["roles"])
    source = render.SourceImage(id="ami-0source0", name="debian", root_device="/dev/xvda", owner="1")
    rendered = render.render(
        p,
        env,
        source=source,
        version=(1, 6, 6),
        out_dir=tmp_path / "app",
        layer=layers.Layer(playbook=playbook, roles_path=layers.roles_dir(p), source_ami="ami-0base0000"),
    )
    assert 'source_ami    = "ami-0base0000"' in rendered.text and "source_ami_filter" not in rendered.text
    assert str(playbook) in rendered.text or "layer-app.yml" in rendered.text
    assert "ANSIBLE_ROLES_PATH=ansible/roles" in rendered.text
    plain = render.render(p, env, source=source, version=(1, 6, 6), out_dir=tmp_path / "plain")
    assert "source_ami_filter" in plain.text and "ANSIBLE_ROLES_PATH" not in plain.text
