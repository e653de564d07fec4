"""Packer's plugins: installed before a build, named by `doctor` when they are not.

Packer 1.6 has the amazon-ebs builder and the ansible provisioner built in. Since Packer 1.7 a
template names the plugins it needs (`packer { required_plugins { ... } }`) and `packer init`
installs them; since 1.10 neither plugin ships inside Packer, and 1.11 loads plugins only from
the plugin directory, each binary with a SHA256SUM beside it
(https://developer.hashicorp.com/packer/docs/plugins). So on Packer >= 1.7 baker runs
`packer init` on the rendered template before `packer validate` and `packer build`. init looks in
the plugin directory first (``PACKER_PLUGIN_PATH``, else ``~/.config/packer/plugins``) and
downloads only what is missing there, so a runner without internet works from a directory
filled beforehand (by `packer init` or `packer plugins install` on a machine with internet).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from baker import runner
from baker.errors import ToolError

log = logging.getLogger("baker")

#: Packer 1.7 introduced `packer { required_plugins }` and `packer init`; 1.6 rejects the block
SINCE = (1, 7, 0)
#: `packer plugins installed` (and `packer plugins install`) exist since Packer 1.8
LISTED_SINCE = (1, 8, 0)

_BLOCK = re.compile(r"required_plugins\s*\{")
_ENTRY = re.compile(r"(?P<name>[A-Za-z0-9_-]+)\s*=\s*\{(?P<body>[^}]*)\}", re.DOTALL)
_ATTR = re.compile(r'(?P<key>version|source)\s*=\s*"(?P<value>[^"]*)"')
#: packer-plugin-amazon_v1.3.10_x5.0_linux_amd64 (the version may carry a -dev suffix)
_BINARY = re.compile(r"^packer-plugin-(?P<name>[A-Za-z0-9-]+?)_v(?P<version>\d+\.\d+\.\d+)[^_]*_x\d")


@dataclass(frozen=True)
class Required:
    """One entry of the template's `required_plugins`."""

    name: str
    source: str
    version: str

    @property
    def plugin(self) -> str:
        """The binary's name part: github.com/hashicorp/amazon -> amazon."""
        return self.source.rsplit("/", 1)[-1].removeprefix("packer-plugin-")

    def install_command(self, packer: tuple[int, int, int]) -> str:
        """What a user runs to install it (an exact pin is installed as that version)."""
        if packer < LISTED_SINCE:
            return "packer init <the rendered template> (baker runs it before each build)"
        pin = exact(self.version)
        return f"packer plugins install {self.source}" + (f" v{pin}" if pin else "")


@dataclass(frozen=True)
class Installed:
    """A plugin binary in the plugin directory."""

    source: str
    name: str
    version: str
    path: str


def required(template_text: str) -> list[Required]:
    """The plugins a template's `required_plugins` names (rendered or not: Jinja lines are ignored)."""
    found = []
    for block in _BLOCK.finditer(template_text):
        depth, end = 1, block.end()
        while depth and end < len(template_text):
            depth += {"{": 1, "}": -1}.get(template_text[end], 0)
            end += 1
        for entry in _ENTRY.finditer(template_text[block.end() : end - 1]):
            attrs = {m.group("key"): m.group("value") for m in _ATTR.finditer(entry.group("body"))}
            if "source" in attrs:
                found.append(Required(entry.group("name"), attrs["source"], attrs.get("version", "")))
    return found


def plugin_dir(env: Mapping[str, str]) -> Path:
    """Where Packer >= 1.7 looks for plugins on Unix."""
    if env.get("PACKER_PLUGIN_PATH"):
        return Path(env["PACKER_PLUGIN_PATH"])
    home = Path(env.get("HOME") or Path.home())
    legacy = home / ".packer.d" / "plugins"
    return legacy if legacy.is_dir() else home / ".config" / "packer" / "plugins"


def parse_installed(paths: Iterable[str], root: Path | None = None) -> list[Installed]:
    """Plugin binaries by path (what `packer plugins installed` prints, one a line)."""
    found = []
    for line in paths:
        path = Path(line.strip())
        match = _BINARY.match(path.name)
        if not match or path.name.endswith("_SHA256SUM"):
            continue
        source = match.group("name")
        if root is not None and path.is_relative_to(root):
            source = path.parent.relative_to(root).as_posix()
        elif len(path.parts) >= 4:
            source = "/".join(path.parts[-4:-1])
        found.append(Installed(source, match.group("name"), match.group("version"), str(path)))
    return found


def installed(binary: str, version: tuple[int, int, int], env: Mapping[str, str]) -> list[Installed]:
    """The installed plugins: Packer's own list on >= 1.8, the plugin directory on 1.7."""
    if version >= LISTED_SINCE:
        result = runner.run(
            [binary, "plugins", "installed"],
            env=dict(env),
            check=False,
            capture=True,
            echo=False,
            timeout=60,
            stage="packer",
        )
        if result.returncode == 0:
            return parse_installed(result.lines, plugin_dir(env))
    root = plugin_dir(env)
    files = [str(p) for p in root.rglob("packer-plugin-*")] if root.is_dir() else []
    return parse_installed(sorted(files), root)


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def exact(constraint: str) -> str | None:
    """The version a constraint pins (`1.3.10`, `= 1.3.10`, `v1.3.10`), None for a range."""
    match = re.fullmatch(r"\s*=?\s*v?(\d+\.\d+\.\d+)\s*", constraint)
    return match.group(1) if match else None


def satisfies(version: str, constraint: str) -> bool:
    """Packer's (HashiCorp's) version constraints: `=`, `!=`, `>`, `>=`, `<`, `<=`, `~>`, comma = and."""
    have = _numbers(version)
    for part in filter(None, (p.strip() for p in constraint.split(","))):
        match = re.fullmatch(r"(=|!=|>=|<=|>|<|~>)?\s*v?([\d.]+)", part)
        if not match:
            return False
        op, want_text = match.group(1) or "=", match.group(2)
        want = _numbers(want_text)
        padded = want + (0,) * (3 - len(want))
        ok = {
            "=": have == padded,
            "!=": have != padded,
            ">": have > padded,
            ">=": have >= padded,
            "<": have < padded,
            "<=": have <= padded,
            # ~> 1.3 allows 1.x >= 1.3; ~> 1.3.2 allows 1.3.x >= 1.3.2
            "~>": have >= padded and have[: max(len(want) - 1, 1)] == want[: max(len(want) - 1, 1)],
        }[op]
        if not ok:
            return False
    return True


def missing(wanted: Iterable[Required], found: Iterable[Installed]) -> list[Required]:
    """The required plugins with no installed binary of a version they accept."""
    found = list(found)
    return [
        r
        for r in wanted
        if not any(i.source == r.source and satisfies(i.version, r.version or ">= 0") for i in found)
    ]


def init_argv(binary: str, template: Path) -> list[str]:
    return [binary, "init", str(template)]


def ensure(
    binary: str,
    version: tuple[int, int, int],
    template: Path,
    *,
    cwd: Path,
    env: Mapping[str, str],
    redact: Iterable[str] = (),
) -> bool:
    """`packer init` on the rendered template when this Packer loads plugins (>= 1.7); its lines
    are relayed with the stage `packer init`. False when there was nothing to do (Packer 1.6)."""
    if version < SINCE:
        return False
    where = plugin_dir(env)
    log.info(
        "packer %s: installing the plugins %s requires (plugin directory %s)",
        _dotted(version),
        template.name,
        where,
    )
    result = runner.run(
        init_argv(binary, template),
        cwd=cwd,
        env=dict(env),
        check=False,
        timeout=600,
        stage="packer init",
        redact=list(redact),
    )
    if result.returncode != 0:
        lines = [ln for ln in result.lines if ln.strip()]
        raise ToolError(
            f"packer init could not install the plugins {template} requires into {where}; "
            "without internet, fill that directory beforehand (packer init or packer plugins install "
            "on a machine with internet, then copy it) or point PACKER_PLUGIN_PATH at one",
            tool="packer",
            output_tail=lines[-20:],
            returncode=result.returncode,
        )
    return True


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))
