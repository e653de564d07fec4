"""Environment files: every value reaches the app byte for byte, through systemd's parser and
through a shell, and sourcing the file runs nothing.

Readers: `parse` (baker's mirror of systemd's parser), `sh` (dash: sources the file, prints each
variable NUL-terminated), and systemd's own parser in the environment.d generator of the systemd
installed here (the same parse_env_file_internal as EnvironmentFile=; that generator also expands
`$VAR` and drops empty values, which EnvironmentFile= does not, so those values skip it).
tests/integration/test_envfile_systemd.py boots the image's systemd and checks a real unit gets
every value, those included.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

from baker import envfile

REPO = Path(__file__).resolve().parents[2]
GENERATOR = Path("/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator")

HOSTILE = {
    "PLAIN": "hello",
    "SPACES": "hello from dev",
    "EMPTY": "",
    "NEWLINES": "line one\nline two\n",
    "CRLF": "dos\r\nline",
    "TABS": "a\tb\t",
    "SINGLE": "it's 'quoted'",
    "ONLY_QUOTE": "'",
    "DOUBLE": 'say "hi"',
    "DOLLAR": "$HOME ${HOME} $(touch PWNED) $$",
    "BACKTICKS": "`touch PWNED`",
    "BACKSLASHES": "back\\slash \\n \\' \\\" trailing\\",
    "BACKSLASH_NEWLINE": "continued\\\nline",
    "UNICODE": "é ü 漢字 🚀 \u200b",
    "LEADING_TRAILING": "  padded  ",
    "COMMENTY": "#not a comment ;nor this",
    "SHELL": "; rm -rf / && echo | cat > x < y",
    "GLOB": "* ? [a-z] ~root",
    "EQUALS": "a=b=c",
    "CONTROL": "bell\x07 esc\x1b[31m del\x7f",
}


def test_render_and_parse_round_trip():
    text = envfile.render(HOSTILE, header="written by baker\nfor tests")
    assert text.startswith("# written by baker\n# for tests\n")
    assert envfile.parse(text) == HOSTILE


def test_render_is_what_shlex_quote_and_ansibles_quote_filter_write():
    assert envfile.render({"A": "it's"}) == "A=" + shlex.quote("it's") + "\n" == "A='it'\"'\"'s'\n"


@pytest.mark.parametrize("bad", [{"1X": "v"}, {"A-B": "v"}, {"A": "nul\0"}, {"A": "\ud800"}])
def test_render_refuses_what_no_environment_can_hold(bad):
    with pytest.raises(ValueError):
        envfile.render(bad)


def test_parse_follows_systemd_on_its_own_syntax():
    text = (
        '# comment\n; comment\nA=plain  \nB = spaced\nC="dq \\$X \\\\ \\n \\""\nD=\'sq \\n\'\n'
        "E=un\\ quoted\\\nnext\nNOEQUALS\nF=a'b'c\n"
    )
    assert envfile.parse(text) == {
        "A": "plain",
        "B": "spaced",
        "C": 'dq $X \\ \\n "',
        "D": "sq \\n",
        "E": "un quotednext",
        "F": "a'b'c",  # quotes after plain text are literal to systemd
    }


def test_sourcing_the_file_in_sh_gives_every_value_and_runs_nothing(tmp_path: Path):
    sh = shutil.which("sh")
    assert sh
    (tmp_path / "app.env").write_text(envfile.render(HOSTILE))
    script = ". ./app.env\n" + "".join(f"printf '%s\\0' \"${key}\"\n" for key in HOSTILE)
    got = subprocess.run([sh, "-c", script], cwd=tmp_path, capture_output=True, check=True, env={})
    values = got.stdout.decode().split("\0")[:-1]
    assert dict(zip(HOSTILE, values, strict=True)) == HOSTILE
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "x").exists()


def _unescape_generator(text: str) -> str:
    """The generator prints `KEY="value"` with C escapes (\\n, \\t, \\033) and \\" \\\\ \\` \\$."""
    assert text.startswith('"') and text.endswith('"'), text
    out, i, body = [], 0, text[1:-1]
    simple = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt.isdigit():
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
        elif nxt == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        else:
            out.append(nxt)
            i += 2
    return "".join(out)


@pytest.mark.skipif(not GENERATOR.is_file(), reason=f"systemd's {GENERATOR.name} is not installed here")
def test_systemds_own_parser_reads_every_value_back(tmp_path: Path):
    values = {k: v for k, v in HOSTILE.items() if v and "$" not in v}
    conf = tmp_path / "environment.d"
    conf.mkdir()
    (conf / "50-app.conf").write_text(envfile.render(values))
    got = subprocess.run(
        [str(GENERATOR)],
        env={"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path / "none")},
        capture_output=True,
        check=True,
    )
    printed = {}
    for line in got.stdout.decode().splitlines():
        key, _, value = line.partition("=")
        printed[key] = _unescape_generator(value) if value.startswith('"') else value
    assert {k: printed.get(k) for k in values} == values


def test_the_ansible_template_writes_what_render_writes():
    source = (REPO / "ansible/roles/app_config/templates/env.j2").read_text()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["quote"] = shlex.quote  # Ansible's quote filter is shlex.quote
    env.filters["bool"] = bool
    greeting = HOSTILE["SINGLE"] + HOSTILE["DOLLAR"] + HOSTILE["NEWLINES"] + HOSTILE["UNICODE"]
    text = env.from_string(source).render(
        baker_env_file="/etc/default/hello-web",
        baker_app="hello-web",
        baker_env="dev",
        hello_greeting=greeting,
        hello_bind="127.0.0.1",
        hello_port=8081,
    )
    assert envfile.parse(text) == {
        "HELLO_BIND": "127.0.0.1",
        "HELLO_PORT": "8081",
        "HELLO_GREETING": greeting,
        "HELLO_UNHEALTHY": "0",
    }
    assert f"HELLO_GREETING={shlex.quote(greeting)}\n" in text


def test_the_example_apps_defaults_parse_the_same_in_systemd_and_sh(tmp_path: Path):
    text = (REPO / "examples/hello-web/default.env").read_text()
    parsed = envfile.parse(text)
    assert parsed["HELLO_GREETING"] == "hello from hello-web"
    shutil.copy(REPO / "examples/hello-web/default.env", tmp_path / "d.env")
    script = ". ./d.env\n" + "".join(f"printf '%s\\0' \"${key}\"\n" for key in parsed)
    got = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, check=True)
    assert got.stdout.decode().split("\0")[:-1] == list(parsed.values())


def test_the_init_templates_env_file_writes_every_value_verbatim():
    """`baker init`'s generic env.j2 (a loop over bake.ansible_vars.app_env), rendered as Ansible's
    template module does (trim_blocks)."""
    source = (REPO / "baker/templates/init/ansible/roles/app_config/templates/env.j2").read_text()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    env.filters["quote"] = shlex.quote
    text = env.from_string(source).render(baker_env_file="/etc/default/app", baker_app="app", app_env=HOSTILE)
    assert envfile.parse(text) == HOSTILE
