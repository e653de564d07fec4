"""The recipe hash: stable when nothing that shapes the image changes, different when anything does."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from baker import recipe
from baker.config import Environment, EnvironmentSettings, load_project, merge, read_yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path):
    shutil.copy(REPO / "baker.yml", tmp_path / "baker.yml")
    for name in ("environments", "ansible"):
        shutil.copytree(REPO / name, tmp_path / name)
    (tmp_path / "app.deb").write_bytes(b"deb bytes v1")
    return load_project(tmp_path)


def environment(project, name: str = "dev", **bake) -> Environment:
    data = merge(
        read_yaml(project.root / "environments" / "defaults.yml"),
        read_yaml(project.root / "environments" / f"{name}.yml"),
    )
    return Environment(
        name=name, settings=EnvironmentSettings.model_validate(merge(data, {"bake": bake})), files=[]
    )


def digest(
    project, env=None, *, template: str = "source {}", source_ami: str = "ami-0123456789abcdef0"
) -> str:
    return recipe.digest_for(
        project,
        env or environment(project),
        deb=project.root / "app.deb",
        template=template,
        source_ami=source_ami,
    )


def test_same_inputs_same_recipe(project):
    first = digest(project)
    assert first == digest(project)
    assert len(first) == 64 and int(first, 16) >= 0


def test_the_deb_bytes_change_the_recipe(project):
    before = digest(project)
    (project.root / "app.deb").write_bytes(b"deb bytes v2")
    assert digest(project) != before


def test_the_rendered_template_changes_the_recipe(project):
    assert digest(project, template="source {}") != digest(project, template="source { }")


def test_the_source_ami_changes_the_recipe(project):
    assert digest(project, source_ami="ami-0123456789abcdef0") != digest(
        project, source_ami="ami-0fedcba9876543210"
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "ansible/roles/hardening/files/sshd-baker.conf").write_text(
            "PasswordAuthentication no\n"
        ),
        lambda root: (root / "ansible/site.yml").write_text(
            (root / "ansible/site.yml").read_text() + "\n# x\n"
        ),
        lambda root: (
            (root / "ansible/roles/extra/tasks").mkdir(parents=True)
            or (root / "ansible/roles/extra/tasks/main.yml").write_text("[]\n")
        ),
        lambda root: (root / "ansible/README.md").unlink(),
        lambda root: (root / "ansible/roles/hardening/files/sshd-baker.conf").rename(
            root / "ansible/roles/hardening/files/sshd-renamed.conf"
        ),
        lambda root: os.chmod(root / "ansible/site.yml", 0o755),
    ],
)
def test_any_change_in_the_ansible_tree_changes_the_recipe(project, change):
    before = digest(project)
    change(project.root)
    assert digest(project) != before


def test_ansible_byproducts_do_not_change_the_recipe(project):
    before = digest(project)
    (project.root / "ansible/__pycache__").mkdir()
    (project.root / "ansible/__pycache__/x.cpython-311.pyc").write_bytes(b"\0")
    (project.root / "ansible/site.retry").write_text("default\n")
    assert digest(project) == before


@pytest.mark.parametrize(
    "bake",
    [
        {"ansible_vars": {"hello_port": 8081}},
        {"ansible_vars": {"hello_greeting": "hello from somewhere else"}},
        {"encrypt_boot": False},
        {"kms_key_id": "alias/other"},
        {"volume_size": 9},
        {"ssh_username": "debian"},
    ],
)
def test_settings_that_shape_the_image_change_the_recipe(project, bake):
    assert digest(project, environment(project, **bake)) != digest(project)


@pytest.mark.parametrize(
    "bake",
    [
        {"timeout": 7200},
        {"instance_type": "c6i.large"},
        {"subnet_id": "subnet-0123"},
        {"vpc_id": "vpc-0123"},
        {"tags": {"team": "other"}},
        {"copy_to_regions": ["eu-west-1"]},
        {"share_with_accounts": ["210987654321"]},
    ],
)
def test_where_and_how_an_image_is_built_leave_the_recipe_alone(project, bake):
    assert digest(project, environment(project, **bake)) == digest(project)


def test_where_the_vault_password_comes_from_leaves_the_recipe_alone(project, monkeypatch):
    monkeypatch.setenv("SOME_PASS", "x")
    env = environment(project, vault_password={"env": "SOME_PASS"})
    assert digest(project, env) == digest(project, environment(project, vault_password={"file": "/dev/null"}))


def test_environments_with_the_same_image_settings_share_a_recipe(project):
    """dev, staging and prod differ in name, account, region and runtime, not in what is baked."""
    dev = digest(project, environment(project, "dev"))
    assert dev == digest(project, environment(project, "staging"))
    assert dev == digest(project, environment(project, "prod"))


def test_image_settings_differences_name_the_keys(project):
    a = recipe.image_settings(environment(project))
    b = recipe.image_settings(environment(project, volume_size=9, ansible_vars={"hello_port": 1}))
    assert recipe.differences(a, b) == ["bake.ansible_vars.hello_port", "bake.volume_size"]
    assert recipe.differences(a, a) == []


def test_a_vault_file_outside_the_ansible_tree_is_an_input(project):
    (project.root / "secrets.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n01\n")
    env = environment(project, vault_file="secrets.yml", vault_password={"env": "X"})
    before = digest(project, env)
    (project.root / "secrets.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n02\n")
    assert digest(project, env) != before


def test_framing_keeps_inputs_apart(tmp_path):
    """Moving bytes from one input to the next must not give the same digest."""
    (tmp_path / "a").mkdir()
    deb = tmp_path / "x.deb"
    deb.write_bytes(b"ab")
    one = recipe.digest(deb=deb, template="c", ansible_dir=tmp_path / "a", settings={}, source_ami="ami-1")
    deb.write_bytes(b"a")
    two = recipe.digest(deb=deb, template="bc", ansible_dir=tmp_path / "a", settings={}, source_ami="ami-1")
    assert one != two
