#!/usr/bin/env python3
"""Ansible Vault password client: prints the password baker handed down in the environment.

baker resolves bake.vault_password (from its own environment variable or file) and passes it to
Packer, and so to ansible-playbook and this script, as BAKER_VAULT_PASSWORD: never on a command
line, never in a file. Ansible calls a script named *-client* with --vault-id; there is one vault.
"""

import os
import sys

password = os.environ.get("BAKER_VAULT_PASSWORD")
if not password:
    sys.stderr.write("vault-pass-client: BAKER_VAULT_PASSWORD is not set (bake.vault_password in the environment)\n")
    sys.exit(1)
sys.stdout.write(password + "\n")
