"""Load balancers you can curl: each ALB listener answers on a loopback port of the local cloud.

The emulator keeps one listening socket per HTTP listener of every application load balancer, on
127.0.0.1 in the local cloud's network namespace (the listener's own port when it is free there,
else one the kernel picks; ``local status`` says which). Each connection goes to the next healthy
target of the listener's forward action (round robin, by weight across target groups), reached at
127.0.0.1:port *inside that target's instance* (a socket made by a thread that entered the
instance's network namespace): never to the address the emulator made up for it. No healthy
target: 503, as an ALB answers; a target that refuses: 502.

A connection is relayed as bytes (the LB does not parse HTTP), so a client that keeps its
connection alive stays on one target; ``curl`` and the bench make one request per connection.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
from dataclasses import dataclass, field

from baker.local import kernel

log = logging.getLogger("baker")

HOST = "127.0.0.1"
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Target:
    instance_id: str
    netns_file: str
    port: int


def _answer(code: int, reason: str) -> bytes:
    body = f"{code} {reason}\n".encode()
    head = (
        f"HTTP/1.1 {code} {reason}\r\nServer: baker-local-elb\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@dataclass
class Listener:
    """One ALB listener's loopback socket and the healthy targets it forwards to."""

    arn: str
    load_balancer: str
    dns_name: str
    port: int
    sock: socket.socket
    targets: list[Target] = field(default_factory=list)
    _turn: itertools.count = field(default_factory=itertools.count)
    _closed: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def serve(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), name="lb-conn", daemon=True).start()

    def pick(self) -> Target | None:
        targets = self.targets  # replaced whole by sync(), never changed in place
        if not targets:
            return None
        return targets[next(self._turn) % len(targets)]

    def _relay(self, client: socket.socket) -> None:
        with client:
            target = self.pick()
            if target is None:
                with contextlib.suppress(OSError):
                    client.sendall(_answer(503, "Service Temporarily Unavailable"))
                return
            try:
                upstream = kernel.in_netns(
                    target.netns_file,
                    lambda: socket.create_connection((HOST, target.port), timeout=CONNECT_TIMEOUT),
                    name="lb-connect",
                )
            except OSError:
                with contextlib.suppress(OSError):
                    client.sendall(_answer(502, "Bad Gateway"))
                return
            with upstream:
                upstream.settimeout(None)
                back = threading.Thread(target=_pipe, args=(upstream, client), name="lb-back", daemon=True)
                back.start()
                _pipe(client, upstream)
                back.join()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.sock.close()


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError:
        sock.close()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((HOST, 0))
    sock.listen(128)
    return sock


class LoadBalancers:
    """Every listener's socket, kept in step with the emulator's load balancers by ``sync``."""

    def __init__(self) -> None:
        self.listeners: dict[str, Listener] = {}

    def sync(self, wanted: dict[str, tuple[str, str, int, list[Target]]]) -> None:
        """``wanted``: listener ARN -> (load balancer name, DNS name, listener port, healthy targets)."""
        for arn in [a for a in self.listeners if a not in wanted]:
            self.listeners.pop(arn).close()
        for arn, (name, dns, port, targets) in wanted.items():
            listener = self.listeners.get(arn)
            if listener is None:
                listener = Listener(arn, name, dns, 0, _bind(port))
                listener.port = int(listener.sock.getsockname()[1])
                self.listeners[arn] = listener
                threading.Thread(target=listener.serve, name=f"lb-{name}", daemon=True).start()
                log.info("load balancer %s (%s): listener %d answers on %s", name, dns, port, listener.url)
            listener.targets = targets

    def describe(self) -> list[dict[str, object]]:
        return [
            {
                "load_balancer": lst.load_balancer,
                "dns_name": lst.dns_name,
                "listener_arn": arn,
                "url": lst.url,
                "healthy_targets": [t.instance_id for t in lst.targets],
            }
            for arn, lst in self.listeners.items()
        ]

    def close(self) -> None:
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()
