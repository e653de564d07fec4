#!/usr/bin/env python3
"""Ansible Vault password client: asks baker for the password and prints it to Ansible.

baker resolves bake.vault_password (from its own environment variable or file) and serves it, for
the length of the build, on a Unix socket in a private directory whose path is in
BAKER_VAULT_SOCKET (see baker/vault.py). The password itself is never in an environment, on a
command line or in a file, and baker answers only this script. Ansible calls a script named
*-client* with --vault-id; there is one vault.
"""

import os
import socket
import sys

path = os.environ.get("BAKER_VAULT_SOCKET")
if not path:
    sys.stderr.write("vault-pass-client: BAKER_VAULT_SOCKET is not set (run by baker with bake.vault_password)\n")
    sys.exit(1)
chunks = []
try:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(path)
        while chunk := conn.recv(65536):
            chunks.append(chunk)
except OSError as exc:
    sys.stderr.write(f"vault-pass-client: cannot reach baker at {path}: {exc.strerror or exc}\n")
    sys.exit(1)
password = b"".join(chunks)
if not password:
    sys.stderr.write("vault-pass-client: baker did not hand over the vault password\n")
    sys.exit(1)
sys.stdout.buffer.write(password)
