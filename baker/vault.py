"""The vault password handoff: only Ansible's vault password client gets the password.

The chain is baker -> packer -> ansible-playbook -> ssh/sftp and the client. Anything in packer's
environment reaches every process of that chain, so the password is not put there (nor on a command
line, nor in a file). Instead baker serves it for the length of the build on a Unix socket in a
private temporary directory (0700, the socket 0600), and puts only the socket's path in the
environment (``BAKER_VAULT_SOCKET``). ``ansible/vault-pass-client.py`` connects and reads it.

The server answers a connection only when the peer (SO_PEERCRED) runs as baker's user and its
command line is the vault client (the script itself, or an interpreter running it); anything
else that connects (an ssh, a packer plugin) gets nothing and a warning is logged. A process of the
same user that is determined to can still ptrace baker: this keeps the password out of places it
would leak by accident (environments, /proc/<pid>/environ, core dumps of children, logs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import struct
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("baker")

#: where the vault client finds the socket
VAULT_SOCKET_ENV = "BAKER_VAULT_SOCKET"
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


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
def handoff(password: str, client: Path) -> Iterator[dict[str, str]]:
    """Serve ``password`` to ``client`` for the length of the block; yields the environment entry
    that tells the client where to ask. The directory is gone when the block ends."""
    directory = tempfile.mkdtemp(prefix="baker-vault-")  # mode 0700
    path = os.path.join(directory, "socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server: _Server | None = None
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(8)
        sock.settimeout(0.2)
        server = _Server(sock, password.encode(), client)
        server.thread.start()
        yield {VAULT_SOCKET_ENV: path}
    finally:
        if server is not None:
            server.stop.set()
        sock.close()
        if server is not None:
            server.thread.join(timeout=2)
        try:
            shutil.rmtree(directory)
        except OSError as exc:
            log.warning("could not remove the vault handoff directory %s: %s", directory, exc.strerror)
