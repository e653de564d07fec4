#!/usr/bin/env python3
"""Ansible Vault password client: asks baker for the password and prints it to Ansible.

baker resolves bake.vault_password (from its own environment variable or file) and serves it,
for the length of the build, on an abstract Unix socket named from the build's id (see
baker/vault.py). Packer's template passes `--vault-id <build id>@vault-pass-client.py`; Ansible
calls a script named *-client* with `--vault-id <build id>`, and that label is all this script
needs: no environment variable carries the password or where to find it, nothing is on disk.
The server must run as this script's user (SO_PEERCRED), and baker answers only this script.
"""

import os
import re
import socket
import struct
import sys

PEERCRED = struct.Struct("3i")  # pid, uid, gid


def fail(message):
    sys.stderr.write(f"vault-pass-client: {message}\n")
    sys.exit(1)


label = None
args = sys.argv[1:]
for i, arg in enumerate(args):
    if arg == "--vault-id" and i + 1 < len(args):
        label = args[i + 1]
    elif arg.startswith("--vault-id="):
        label = arg.split("=", 1)[1]
if not label:
    fail("no --vault-id given (Ansible passes it when baker's template says --vault-id <build id>@this script)")
if not re.match(r"^[A-Za-z0-9_-]{1,64}$", label):
    fail(f"not a baker build id: {label!r}")
name = f"\0baker-vault/{label}"
chunks = []
try:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(name)
        _, uid, _ = PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size))
        if uid != os.getuid():
            fail(f"@baker-vault/{label} is served by uid {uid}, not by this user: not asking it")
        while chunk := conn.recv(65536):
            chunks.append(chunk)
except OSError as exc:
    fail(f"cannot reach baker at @baker-vault/{label} (is the build {label} running?): {exc.strerror or exc}")
password = b"".join(chunks)
if not password:
    fail("baker did not hand over the vault password")
sys.stdout.buffer.write(password)
