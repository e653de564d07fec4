"""bake's pure parts: Packer's machine-readable output, the artifact, the argv, CI, credentials."""

from __future__ import annotations

from pathlib import Path

from baker import bake, provenance, render

# lines as Packer 1.6.6 writes them with -machine-readable (commas and newlines escaped)
LINES = [
    "1763900000,,ui,say,==> amazon-ebs.app: Launching a source AWS instance...",
    "1763900001,,ui,message,    amazon-ebs.app: TASK [app_config : Write /etc/default/hello-web] ****",
    '1763900002,,ui,message,    amazon-ebs.app: fatal: [default]: FAILED! => {"msg": "a%!(PACKER_COMMA) b"}',
    "1763900003,,ui,error,Build 'amazon-ebs.app' errored: Error executing Ansible\\nsecond line",
    "1763900004,amazon-ebs.app,artifact-count,1",
    "1763900005,amazon-ebs.app,artifact,0,builder-id,mitchellh.amazonebs",
    "1763900006,amazon-ebs.app,artifact,0,id,us-east-1:ami-0aaa%!(PACKER_COMMA)eu-west-1:ami-0bbb",
    "1763900007,amazon-ebs.app,artifact,0,end",
    "not a machine-readable line",
]


def test_machine_readable_lines_are_unescaped():
    assert bake.parse_machine_line(LINES[2]) == (
        "",
        "ui",
        ["message", '    amazon-ebs.app: fatal: [default]: FAILED! => {"msg": "a, b"}'],
    )
    assert bake.parse_machine_line(LINES[-1]) is None


def test_the_artifact_names_an_ami_per_region():
    assert bake.parse_artifact_id("us-east-1:ami-0aaa,eu-west-1:ami-0bbb") == {
        "us-east-1": "ami-0aaa",
        "eu-west-1": "ami-0bbb",
    }


def test_watch_collects_progress_artifacts_and_the_failing_task(tmp_path: Path):
    with (tmp_path / "build.log").open("w") as fh:
        watch = bake.PackerWatch(log_file=fh)
        for line in LINES:
            watch(line)
    assert watch.amis() == {"us-east-1": "ami-0aaa", "eu-west-1": "ami-0bbb"}
    errors = watch.error_lines()
    assert errors[0].endswith("TASK [app_config : Write /etc/default/hello-web] ****")
    assert any("FAILED!" in e for e in errors)
    assert "second line" in errors
    log = (tmp_path / "build.log").read_text()
    assert "Launching a source AWS instance" in log and "1763900000" not in log


def test_packer_build_argv_is_machine_readable_and_cleans_up_on_error(tmp_path: Path):
    rendered = render.Rendered(
        directory=tmp_path,
        template=tmp_path / "ami.pkr.hcl",
        variables=tmp_path / "ami.pkrvars.hcl",
        text="",
        packer_version=(1, 6, 6),
        source=render.SourceImage(id="ami-1", name="", root_device="/dev/xvda", owner=""),
    )
    argv = bake.packer_build_argv("packer", rendered)
    assert argv[:3] == ["packer", "build", "-machine-readable"]
    assert "-on-error=cleanup" in argv
    assert argv[-2:] == [f"-var-file={tmp_path / 'ami.pkrvars.hcl'}", str(tmp_path / "ami.pkr.hcl")]


def test_ci_url_comes_from_the_ci_system_or_not_at_all():
    assert provenance.ci_url({}) is None
    github = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "7"}
    assert provenance.ci_url(github) == "https://github.com/o/r/actions/runs/7"
    assert provenance.ci_url({"CI_JOB_URL": "https://gitlab/j/1"}) == "https://gitlab/j/1"
    assert provenance.ci_url({"BAKER_CI_URL": "https://x", "BUILD_URL": "https://y"}) == "https://x"


def test_watch_reads_the_ansible_version_the_playbook_reports():
    watch = bake.PackerWatch()
    watch("1763900000,,ui,message,    amazon-ebs.app: ok: [default] => {")
    watch('1763900001,,ui,message,    amazon-ebs.app:     "msg": "baker-ansible-version=2.19.14"')
    assert watch.ansible_version == "2.19.14"
    assert provenance.builder((1, 6, 6), watch.ansible_version) == (
        f"baker {provenance.__version__}; packer 1.6.6; ansible-core 2.19.14"
    )
