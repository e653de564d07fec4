"""The vault password handoff: only Ansible's vault password client gets the password.

The chain is baker -> packer -> ansible-playbook -> ssh/sftp and the client. Anything in packer's
environment reaches every process of that chain, so neither the password nor where to find it is
put there (nor the password on a command line, nor in a file). The rendezvous travels the one way
Ansible has for it: the template passes ``--vault-id <build id>@vault-pass-client.py``, Ansible
calls a ``*-client*`` script with ``--vault-id <build id>``, and the client connects to the abstract
Unix socket named from that label (``socket_name``), which baker listens on for the length of the
build. The build id is random per build, a Packer variable, and not a secret: it only says where
to ask. No environment of any child carries a vault variable.

Both ends check who is at the other end (SO_PEERCRED). baker answers a connection only when the
peer runs as baker's user and its command line is the vault client (the script itself, or an
interpreter running it); anything else that connects (an ssh, a packer plugin, a copy of the
script elsewhere) gets nothing and a warning is logged. The client reads the password only from
a server of its own user, so a socket of another user that squats the name feeds it nothing. A
process of the same user that is determined to can still ptrace baker: this keeps the password
out of places it would leak by accident (environments, /proc/<pid>/environ, core dumps of
children, logs).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

from baker.errors import BakerError, UsageError

log = logging.getLogger("baker")

_PEERCRED = struct.Struct("3i")  # pid, uid, gid
#: what a label may be: the client refuses anything else (it becomes part of a socket name)
LABEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def socket_name(label: str) -> str:
    """The abstract socket of one build (leading NUL: no file, gone with the socket).

    ansible/vault-pass-client.py derives the same name from its ``--vault-id``; the unit tests run
    the real client against ``handoff``, so the two cannot drift apart."""
    if not LABEL.match(label):
        raise UsageError(f"not a vault handoff label: {label!r} (letters, digits, - and _)")
    return f"\0baker-vault/{label}"


def is_client(pid: int, client: Path) -> bool:
    """Whether process ``pid`` runs ``client``: as argv[0], or as argv[1] of an interpreter."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    want = os.path.realpath(client)

    def names_client(arg: bytes) -> bool:
        return bool(arg) and os.path.realpath(os.path.join(cwd, os.fsdecode(arg))) == want

    if argv and names_client(argv[0]):
        return True
    interpreter = os.path.basename(os.fsdecode(argv[0])).startswith("python") if argv else False
    return interpreter and len(argv) > 1 and names_client(argv[1])


class _Server:
    def __init__(self, sock: socket.socket, password: bytes, client: Path) -> None:
        self.sock = sock
        self.password = password
        self.client = client
        self.stop = threading.Event()
        self.served = 0
        self.refused = 0
        self.thread = threading.Thread(target=self._loop, name="vault-handoff", daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        pid, uid, _ = _PEERCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        if uid != os.getuid() or not is_client(pid, self.client):
            self.refused += 1
            log.warning("vault password refused to process %d: it is not %s", pid, self.client)
            return
        try:
            conn.sendall(self.password + b"\n")
            self.served += 1
        except OSError as exc:
            log.warning("vault password client (process %d) went away: %s", pid, exc.strerror)


@contextlib.contextmanager
def handoff(password: str, client: Path, label: str) -> Iterator[str]:
    """Serve ``password`` to ``client`` for the length of the block on the abstract socket of
    ``label`` (the build id the client is given as its ``--vault-id``); yields the socket's name.
    Nothing is left on disk, and the name is free again when the block ends."""
    name = socket_name(label)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server: _Server | None = None
    try:
        try:
            sock.bind(name)
        except OSError as exc:
            why = "another process holds it" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise BakerError(f"cannot serve the vault password on @{name[1:]}: {why}") from exc
        sock.listen(8)
        sock.settimeout(0.2)
        server = _Server(sock, password.encode(), client)
        server.thread.start()
        yield name
    finally:
        if server is not None:
            server.stop.set()
        sock.close()
        if server is not None:
            server.thread.join(timeout=2)
