"""Packer of today: on Packer >= 1.7 a bake runs `packer init` on the rendered template before
`packer build`, and `doctor` names the plugins found and missing.

Packer 1.11 cannot run here (it would download its plugins): tests/fakes/packer-1.11-stand-in
stands in for it, first on PATH as `packer`, and refuses `build` until `init` ran, as Packer 1.11
does. The real Packer 1.6.6 path (no init, plugins built in) is the one the integration tests bake
with; here it is checked that nothing changes for it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from baker import bake, doctor, package, plugins, render
from baker.config import load_project
from baker.errors import ToolError
from tests.conftest import REPO, copy_project, need_tools
from tests.standins import NoCredentialsAWS, PackerMadeEC2

STAND_IN = REPO / "tests" / "fakes" / "packer-1.11-stand-in"
SOURCE = render.SourceImage("ami-0fedcba9876543210", "debian", "/dev/xvda", "136693071363")


@pytest.fixture
def packer_1_11(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in first on PATH as `packer`, an empty plugin directory; returns its argv log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "packer").symlink_to(STAND_IN)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PACKER_PLUGIN_PATH", str(tmp_path / "plugins"))
    log = tmp_path / "packer-argv.jsonl"
    monkeypatch.setenv("BAKER_FAKE_PACKER_LOG", str(log))
    return log


def calls(log: Path) -> list[str]:
    """The stand-in's subcommands, in the order baker called them."""
    if not log.exists():
        return []
    return [
        " ".join(a[:2]) if a[0] == "plugins" else a[0] for a in map(json.loads, log.read_text().splitlines())
    ]


_EC2 = PackerMadeEC2
_AWS = NoCredentialsAWS


def bake_with(tmp_path: Path, version: tuple[int, int, int]) -> dict[str, str]:
    """Render the project's real template for ``version`` and run the bake's Packer part."""
    where = tmp_path / "p"
    if not where.is_dir():
        where.mkdir()
        copy_project(where, "environments", "ansible", "packer")
    project = load_project(where)
    env = project.environment("dev")
    out = tmp_path / "build"
    rendered = render.render(project, env, source=SOURCE, version=version, out_dir=out)
    deb = out / "app.deb"
    deb.write_bytes(b"")
    pkg = package.Package(deb, "hello-web", "0.1.0", "0" * 64, None, "2026-01-01T00:00:00Z")
    prepared = render.Prepared(
        pkg=pkg,
        source=SOURCE,
        packer_version=version,
        recipe="f" * 64,
        ec2=_EC2(),
        directory=out,
        renderer=lambda: rendered,
    )
    stage = bake.Bake(project, env, _AWS())  # type: ignore[arg-type]
    amis, *_ = stage._build(prepared)
    return amis


def test_the_template_pins_both_plugins_and_gates_what_packer_1_6_lacks():
    project = load_project(REPO)
    env = project.environment("dev")
    template = render.template_path(project).read_text()
    pinned = {p.name: (p.source, plugins.exact(p.version)) for p in plugins.required(template)}
    assert pinned == {
        "amazon": ("github.com/hashicorp/amazon", "1.3.10"),
        "ansible": ("github.com/hashicorp/ansible", "1.1.2"),
    }
    for version, today in (((1, 6, 6), False), ((1, 7, 0), True), ((1, 11, 2), True)):
        context = render.template_context(project, env, source=SOURCE, version=version)
        text = render.render_template(project, context)
        assert ("required_plugins" in text) is today and ('imds_support  = "v2.0"' in text) is today
        assert len(plugins.required(text)) == (2 if today else 0)


@pytest.mark.parametrize(
    ("version", "constraint", "ok"),
    [
        ("1.3.10", "= 1.3.10", True),
        ("1.3.9", "= 1.3.10", False),
        ("1.3.10", "1.3.10", True),
        ("1.3.10", ">= 1.2.0", True),
        ("1.1.9", ">= 1.2.0", False),
        ("1.9.0", "~> 1.3", True),
        ("2.0.0", "~> 1.3", False),
        ("1.3.12", "~> 1.3.2", True),
        ("1.4.0", "~> 1.3.2", False),
        ("1.3.5", ">= 1.2, < 1.3.5", False),
        ("1.3.4", ">= 1.2, < 1.3.5, != 1.3.3", True),
    ],
)
def test_version_constraints_as_packer_reads_them(version, constraint, ok):
    assert plugins.satisfies(version, constraint) is ok


def test_installed_plugins_are_read_from_their_paths(tmp_path: Path):
    root = tmp_path / "plugins"
    listed = [
        f"{root}/github.com/hashicorp/amazon/packer-plugin-amazon_v1.3.10_x5.0_linux_amd64",
        f"{root}/github.com/hashicorp/amazon/packer-plugin-amazon_v1.3.10_x5.0_linux_amd64_SHA256SUM",
        "/elsewhere/github.com/hashicorp/ansible/packer-plugin-ansible_v1.1.2-dev_x5.0_linux_amd64",
        "not a plugin",
    ]
    found = plugins.parse_installed(listed, root)
    assert [(i.source, i.name, i.version) for i in found] == [
        ("github.com/hashicorp/amazon", "amazon", "1.3.10"),
        ("github.com/hashicorp/ansible", "ansible", "1.1.2"),
    ]
    wanted = plugins.required(render.template_path(load_project(REPO)).read_text())
    assert plugins.missing(wanted, found) == []
    assert [r.name for r in plugins.missing(wanted, found[:1])] == ["ansible"]
    assert plugins.plugin_dir({"PACKER_PLUGIN_PATH": str(root)}) == root
    assert plugins.plugin_dir({"HOME": str(tmp_path)}) == tmp_path / ".config/packer/plugins"


def test_a_bake_with_packer_1_11_runs_init_before_build(tmp_path: Path, packer_1_11: Path, caplog):
    caplog.set_level(logging.INFO, logger="baker")
    amis = bake_with(tmp_path, (1, 11, 2))
    assert amis == {"us-east-1": "ami-0123456789abcdef0"}
    assert calls(packer_1_11) == ["init", "build"]
    installed = sorted(p.name for p in (tmp_path / "plugins").rglob("packer-plugin-*"))
    assert installed == [
        "packer-plugin-amazon_v1.3.10_x5.0_linux_amd64",
        "packer-plugin-amazon_v1.3.10_x5.0_linux_amd64_SHA256SUM",
        "packer-plugin-ansible_v1.1.2_x5.0_linux_amd64",
        "packer-plugin-ansible_v1.1.2_x5.0_linux_amd64_SHA256SUM",
    ]
    # init's own words relayed with the stage prefix
    assert any(
        r.getMessage().startswith("[packer init] Installed plugin github.com/hashicorp/amazon")
        for r in caplog.records
    )


def test_offline_a_filled_plugin_directory_is_used_as_is(tmp_path: Path, packer_1_11: Path, monkeypatch):
    bake_with(tmp_path, (1, 11, 2))  # fills the directory, as a machine with internet would
    monkeypatch.setenv("BAKER_FAKE_OFFLINE", "1")
    packer_1_11.unlink()
    assert bake_with(tmp_path, (1, 11, 2)) == {"us-east-1": "ami-0123456789abcdef0"}
    assert calls(packer_1_11) == ["init", "build"]


def test_offline_without_plugins_init_fails_with_packers_words_and_nothing_is_built(
    tmp_path: Path, packer_1_11: Path, monkeypatch
):
    monkeypatch.setenv("BAKER_FAKE_OFFLINE", "1")
    with pytest.raises(ToolError) as failed:
        bake_with(tmp_path, (1, 11, 2))
    assert failed.value.exit_code == 3
    assert "packer init could not install the plugins" in failed.value.message
    assert "PACKER_PLUGIN_PATH" in failed.value.message
    assert any("lookup api.github.com: no such host" in line for line in failed.value.output_tail)
    assert calls(packer_1_11) == ["init"]  # never built


def test_the_stand_in_refuses_a_build_without_init_as_packer_1_11_does(tmp_path: Path, packer_1_11: Path):
    project = load_project(copy_project(tmp_path, "environments", "ansible", "packer"))
    out = tmp_path / "build"
    rendered = render.render(
        project, project.environment("dev"), source=SOURCE, version=(1, 11, 2), out_dir=out
    )
    from baker import runner

    done = runner.run(["packer", "build", str(rendered.template)], check=False, capture=True, echo=False)
    assert done.returncode == 1 and "Did you run packer init" in done.output


def test_packer_1_6_gets_no_init():
    # the binary does not exist: nothing may be started for Packer 1.6
    ran = plugins.ensure("/nonexistent/packer", (1, 6, 6), Path("t.pkr.hcl"), cwd=Path("/"), env={})
    assert ran is False


def test_doctor_names_the_missing_plugins_with_the_command_that_installs_them(
    tmp_path: Path, packer_1_11: Path
):
    project = load_project(REPO)
    missing = doctor.check_plugins(project)
    assert not missing.ok
    assert (
        "Packer 1.11.2 needs github.com/hashicorp/amazon = 1.3.10, github.com/hashicorp/ansible = 1.1.2"
        in missing.detail
    )
    assert "packer plugins install github.com/hashicorp/amazon v1.3.10" in missing.fix
    assert "packer plugins install github.com/hashicorp/ansible v1.1.2" in missing.fix
    bake_with(tmp_path, (1, 11, 2))  # its init installs them
    found = doctor.check_plugins(project)
    assert found.ok, found
    assert "github.com/hashicorp/amazon 1.3.10, github.com/hashicorp/ansible 1.1.2" in found.detail
    assert "plugins installed" in calls(packer_1_11)  # Packer >= 1.8 lists its own


def test_doctor_with_packer_1_6_says_the_plugins_are_built_in_and_names_the_provider_range():
    need_tools("packer")
    project = load_project(REPO)
    check = doctor.check_plugins(project)
    assert check.ok and "built in" in check.detail
    provider = doctor.check_provider(project)
    assert provider.ok and "hashicorp/aws >= 5.40, < 6.0" in provider.detail


def test_the_ci_recipes_install_the_pinned_plugins():
    wanted = plugins.required(render.template_path(load_project(REPO)).read_text())
    for recipe in ("github-actions/release-dev.yml", "github-actions/nightly.yml", "gitlab/.gitlab-ci.yml"):
        text = (REPO / "examples" / "ci" / recipe).read_text()
        for plugin in wanted:
            assert plugin.install_command((1, 11, 2)) in text, recipe
