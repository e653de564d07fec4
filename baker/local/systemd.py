"""A unit's ExecStart run the way systemd would configure it, where no systemd runs (a build session).

Booted instances run the image's own systemd (baker.local.instances); a build session is a chroot
with an sshd, and Packer's provisioning may want to try the app there. This reads the unit's
User=, Group=, WorkingDirectory=, Environment= and EnvironmentFile= (as systemd parses them).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from baker import envfile
from baker.errors import UsageError

CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")


def parse_unit(text: str) -> dict[str, list[str]]:
    """The [Service] section of a systemd unit as key -> values (later values appended)."""
    section = ""
    out: dict[str, list[str]] = {}
    joined = re.sub(r"\\\n", " ", text)
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (baker/envfile.py mirrors its parser)."""
    return envfile.parse(text)


def expand_exec(command: str, env: dict[str, str]) -> list[str]:
    """ExecStart= as argv: prefixes dropped, ``$VAR`` words split, ``${VAR}`` substituted."""
    command = command.lstrip("-@+!:")
    argv: list[str] = []
    for word in shlex.split(command):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            argv += env.get(m.group(1), "").split()
            continue
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda g: env.get(g.group(1), ""), word))
    return argv


def service_command(
    root: Path, unit: str, *, uts_of: int, env: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """argv and environment that run ``unit`` in the chroot ``root`` as its user.

    ``uts_of``: a PID whose UTS and IPC namespaces the service joins (the session's sshd, so it
    sees the instance's hostname). ``env`` overrides (a port, say). The environment goes through
    the process environment, never argv.
    """
    text = next((p.read_text() for p in (root / d / unit for d in UNIT_DIRS) if p.is_file()), None)
    if text is None:
        raise UsageError(f"no systemd unit {unit} in {root}")
    service = parse_unit(text)
    environ = {"PATH": CHROOT_PATH, "LANG": "C.UTF-8"}
    for line in service.get("Environment", []):
        for word in shlex.split(line):
            key, _, value = word.partition("=")
            environ[key] = value
    for spec in service.get("EnvironmentFile", []):
        optional = spec.startswith("-")
        path = root / spec.lstrip("-").lstrip("/")
        if path.is_file():
            environ.update(parse_env_file(path.read_text()))
        elif not optional:
            raise UsageError(f"{unit}: EnvironmentFile {spec} is missing in the image")
    environ.update(env or {})
    exec_start = [v for v in service.get("ExecStart", []) if v]
    if not exec_start:
        raise UsageError(f"{unit} has no ExecStart")
    user = (service.get("User") or ["root"])[-1]
    group = (service.get("Group") or [""])[-1]
    workdir = (service.get("WorkingDirectory") or ["/"])[-1].lstrip("-")
    spec = f"{user}:{group}" if group else user
    argv = [
        "nsenter", f"--target={uts_of}", "--uts", "--ipc", "--",
        "chroot", f"--userspec={spec}", str(root),
        "/usr/bin/env", f"--chdir={workdir}", *expand_exec(exec_start[-1], environ),
    ]  # fmt: skip
    return argv, environ
