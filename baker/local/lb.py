"""Load balancers you can curl: each ALB listener answers on a loopback port of the local cloud.

The emulator keeps one listening socket per HTTP or HTTPS listener of every application load balancer, on
127.0.0.1 in the local cloud's network namespace (the listener's own port when it is free there,
else one the kernel picks; ``local status`` says which). Each connection goes to the next healthy
target of the listener's forward action (round robin, by weight across target groups), reached at
127.0.0.1:port *inside that target's instance* (a socket made by a thread that entered the
instance's network namespace): never to the address the emulator made up for it. No healthy
target: 503, as an ALB answers; a target that refuses: 502.

A connection is relayed as bytes (the LB does not parse HTTP), so a client that keeps its
connection alive stays on one target; ``curl`` and the bench make one request per connection.

An HTTPS listener terminates TLS with its ACM certificate (the minimum version from its policy)
and relays the plain bytes to the target, as an ALB does; a listener whose default action is a
redirect answers it (301 or 302 to the protocol and port it names, host, path and query kept).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from baker.local import kernel

log = logging.getLogger("baker")

HOST = "127.0.0.1"
CONNECT_TIMEOUT = 5.0
#: a message head longer than this is not HTTP we follow: the rest of the connection is not counted
MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class Target:
    instance_id: str
    netns_file: str
    port: int
    target_group_arn: str = ""


@dataclass(frozen=True)
class Certificate:
    """What an HTTPS listener serves: its ACM certificate (PEM), chain and key, and its policy."""

    arn: str
    pem: bytes
    chain: bytes
    key: bytes
    policy: str = ""

    def context(self) -> ssl.SSLContext:
        """A server context; the key reaches OpenSSL through an anonymous memory file, never disk."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # ELBSecurityPolicy-TLS13-1-3-*: TLS 1.3 only; the other current policies start at 1.2
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if "-1-3-" in self.policy else ssl.TLSVersion.TLSv1_2
        fd = os.memfd_create("baker-lb-certificate")
        try:
            os.write(fd, self.pem.strip() + b"\n" + self.chain.strip() + b"\n" + self.key)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return ctx


@dataclass(frozen=True)
class Redirect:
    """A listener's redirect action: ``status`` to ``protocol`` on the load balancer's ``port``."""

    status: int
    protocol: str
    port: int


@dataclass(frozen=True)
class Route:
    """What the emulator wants of one listener: where it answers and what it does there."""

    load_balancer_arn: str
    name: str
    dns_name: str
    port: int
    targets: list[Target] = field(default_factory=list)
    certificate: Certificate | None = None
    redirect: Redirect | None = None


class Meter:
    """The answers the load balancers relayed or made, per second, as CloudWatch sums them.

    Keys are (second, load balancer ARN, target group ARN or "" for the load balancer's own
    answers, metric name). Relay threads add; the emulator's CloudWatch reads (``rows``).
    Seconds older than ``keep`` are dropped (CloudWatch keeps minutes for 15 days; a local cloud
    needs the last hours at most).
    """

    def __init__(self, clock: Callable[[], float] = time.time, keep: float = 3 * 3600) -> None:
        self.clock = clock
        self.keep = keep
        self._lock = threading.Lock()
        self._counts: collections.Counter[tuple[int, str, str, str]] = collections.Counter()
        self._pruned = 0

    def target(self, load_balancer_arn: str, target_group_arn: str, code: int) -> None:
        """A target answered ``code`` through the load balancer."""
        if 200 <= code < 600:
            self._add(load_balancer_arn, target_group_arn, f"HTTPCode_Target_{code // 100}XX_Count")

    def elb(self, load_balancer_arn: str, code: int) -> None:
        """The load balancer answered ``code`` itself (no healthy target, a target that failed)."""
        if 500 <= code < 600:
            self._add(load_balancer_arn, "", "HTTPCode_ELB_5XX_Count")
            if code in (500, 502, 503, 504):
                self._add(load_balancer_arn, "", f"HTTPCode_ELB_{code}_Count")

    def _add(self, load_balancer_arn: str, target_group_arn: str, metric: str) -> None:
        now = int(self.clock())
        with self._lock:
            self._counts[(now, load_balancer_arn, target_group_arn, metric)] += 1
            if now - self._pruned >= 60:
                self._pruned = now
                for key in [k for k in self._counts if k[0] < now - self.keep]:
                    del self._counts[key]

    def rows(self) -> list[tuple[int, str, str, str, int]]:
        """(second, load balancer ARN, target group ARN or "", metric, count), oldest first."""
        with self._lock:
            return sorted((*key, n) for key, n in self._counts.items())


class InFlight:
    """The requests each instance is serving through the load balancers now. A request counts from
    the moment its target is picked (under the same lock as the count is read, so a count read
    after the targets changed has every pick made before) until its answer is relayed; what
    Auto Scaling waits for before it ends a deregistered instance (baker.local.moto.refresh)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def pick(self, targets: Callable[[], list[Target]], turn: int) -> Target | None:
        with self._lock:
            found = targets()
            if not found:
                return None
            target = found[turn % len(found)]
            self._counts[target.instance_id] += 1
            return target

    def done(self, target: Target) -> None:
        with self._lock:
            self._counts[target.instance_id] -= 1
            if self._counts[target.instance_id] <= 0:
                del self._counts[target.instance_id]

    def serving(self, instance_id: str) -> int:
        with self._lock:
            return self._counts.get(instance_id, 0)


class Framing:
    """Where HTTP/1.x messages start and end in one direction of a relayed connection.

    Fed the bytes as they pass; calls ``on_start(start_line_words)`` for each message head. For
    responses, ``methods`` (the requests' methods, oldest first, filled by the other direction's
    Framing before the request reaches the target) says which answers carry no body (HEAD).
    Anything it cannot follow (an upgrade, CONNECT, a head past MAX_HEAD, a body until close)
    ends the counting for this connection; the bytes are relayed all the same.
    """

    def __init__(
        self,
        kind: str,
        on_start: Callable[[list[str]], None],
        methods: collections.deque[str] | None = None,
    ) -> None:
        self.kind = kind
        self.on_start = on_start
        self.methods: collections.deque[str] = methods if methods is not None else collections.deque()
        self.buf = b""
        self.state = "head"
        self.left = 0  # bytes of body or chunk still to skip

    def feed(self, data: bytes) -> None:
        while data and self.state != "opaque":
            if self.state in ("body", "chunk"):
                skip = min(self.left, len(data))
                self.left -= skip
                data = data[skip:]
                if self.left == 0:
                    self.state = "head" if self.state == "body" else "chunk-end"
                continue
            self.buf += data
            data = b""
            if not self._lines():
                return
            data, self.buf = self.buf, b""

    def _lines(self) -> bool:
        """Consume what ``buf`` holds of a head, a chunk size line or a trailer; False: need more."""
        while self.state not in ("opaque", "body", "chunk"):
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > MAX_HEAD:
                        self.state = "opaque"
                    return False
                head, self.buf = self.buf[:end], self.buf[end + 4 :]
                self._head(head.decode("latin-1"))
            else:  # chunk-size, chunk-end (the CRLF after the data), trailer
                end = self.buf.find(b"\r\n")
                if end < 0:
                    if len(self.buf) > MAX_HEAD:
                        self.state = "opaque"
                    return False
                line, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 2 :]
                self._line(line.strip())
            if not self.buf and self.state not in ("opaque",):
                return False
        return True

    def _line(self, line: str) -> None:
        if self.state == "chunk-end":
            self.state = "chunk-size"
        elif self.state == "chunk-size":
            try:
                size = int(line.split(";", 1)[0], 16)
            except ValueError:
                self.state = "opaque"
                return
            self.state, self.left = ("trailer", 0) if size == 0 else ("chunk", size)
        elif self.state == "trailer" and not line:
            self.state = "head"

    def _head(self, head: str) -> None:
        lines = head.lstrip("\r\n").split("\r\n")
        words = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        chunked = "chunked" in headers.get("transfer-encoding", "")
        length = headers.get("content-length", "")
        if self.kind == "request":
            method = words[0].upper()
            self.methods.append(method)
            self.on_start(words)
            if method == "CONNECT" or "upgrade" in headers.get("connection", ""):
                self.state = "opaque"
            else:
                self._body(chunked, length, until_close=False)
            return
        code = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
        if code == 101 or code == 0:
            self.state = "opaque"
            return
        self.on_start(words)
        if 100 <= code < 200:  # an interim answer: the final one follows, for the same request
            return
        method = self.methods.popleft() if self.methods else "GET"
        if method == "HEAD" or code in (204, 304):
            self._body(False, "0", until_close=False)
        else:
            self._body(chunked, length, until_close=True)

    def _body(self, chunked: bool, length: str, *, until_close: bool) -> None:
        if chunked:
            self.state = "chunk-size"
        elif length.isdigit():
            self.state, self.left = ("body", int(length)) if int(length) else ("head", 0)
        else:
            self.state = "opaque" if until_close else "head"


def _answer(code: int, reason: str) -> bytes:
    body = f"{code} {reason}\n".encode()
    head = (
        f"HTTP/1.1 {code} {reason}\r\nServer: baker-local-elb\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _redirect_answer(head: bytes, redirect: Redirect, port: int) -> bytes:
    """The redirect of a request whose head is ``head``: same host, path and query, ``port`` (the
    local port of the listener the action names)."""
    lines = head.decode("latin-1").split("\r\n")
    words = lines[0].split(" ")
    target = words[1] if len(words) > 1 and words[1].startswith("/") else "/"
    host = next((ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("host:")), HOST)
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    scheme = redirect.protocol.lower()
    location = (
        f"{scheme}://{host}{'' if (scheme, port) in (('https', 443), ('http', 80)) else f':{port}'}{target}"
    )
    reason = {301: "Moved Permanently", 302: "Found"}.get(redirect.status, "Found")
    return (
        f"HTTP/1.1 {redirect.status} {reason}\r\nServer: baker-local-elb\r\nLocation: {location}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n"
    ).encode()


def _read_head(client: socket.socket) -> bytes | None:
    """A request's head (up to the blank line), or None when the client sent none in time."""
    head = b""
    try:
        client.settimeout(CONNECT_TIMEOUT)
        while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
            data = client.recv(4096)
            if not data:
                return None
            head += data
    except OSError:
        return None
    return head.split(b"\r\n\r\n", 1)[0]


def _pump(client: socket.socket, upstream: socket.socket, requests: Framing, answers: Framing) -> int:
    """Relay both ways in one thread (a TLS socket must not be read and written by two threads at
    once); the bytes the target answered."""
    answered = 0
    open_ends = {client, upstream}
    while upstream in open_ends:
        pending = isinstance(client, ssl.SSLSocket) and client in open_ends and client.pending() > 0
        ready = [client] if pending else select.select(list(open_ends), [], [])[0]
        for sock in ready:
            try:
                data = sock.recv(65536)
            except (OSError, ssl.SSLError):
                data = b""
            if sock is client:
                if not data:
                    open_ends.discard(client)
                    _shut(upstream)
                    continue
                requests.feed(data)
                upstream.sendall(data)
            else:
                if not data:
                    open_ends.discard(upstream)
                    if isinstance(client, ssl.SSLSocket):  # close_notify: the answer ends here
                        with contextlib.suppress(OSError, ValueError):
                            client.settimeout(1)
                            client.unwrap()
                    continue
                answers.feed(data)
                try:
                    client.sendall(data)
                except OSError:
                    return answered
                answered += len(data)
    return answered


def _pipe(src: socket.socket, dst: socket.socket, framing: Framing) -> int:
    """Relay ``src`` to ``dst`` until ``src`` ends, framing what passes; the bytes relayed."""
    relayed = 0
    try:
        while data := src.recv(65536):
            framing.feed(data)  # before the peer has it: a request's method is known before its answer
            dst.sendall(data)
            relayed += len(data)
    except OSError:
        pass
    return relayed


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


@dataclass
class Listener:
    """One ALB listener's loopback socket and the healthy targets it forwards to."""

    arn: str
    load_balancer: str
    dns_name: str
    port: int
    sock: socket.socket
    load_balancer_arn: str = ""
    meter: Meter = field(default_factory=Meter)
    flights: InFlight = field(default_factory=InFlight)
    targets: list[Target] = field(default_factory=list)
    #: HTTPS: the server context of the listener's certificate (and which certificate it holds)
    tls: ssl.SSLContext | None = None
    certificate: Certificate | None = None
    redirect: Redirect | None = None
    #: the listener's own port (what AWS says); ``port`` is where it answers here
    declared: int = 0
    #: the local port of this load balancer's listener on a given listener port (for redirects)
    port_of: Callable[[str, int], int | None] = lambda lb, port: None
    _turn: itertools.count = field(default_factory=itertools.count)
    _closed: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    def serve(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), name="lb-conn", daemon=True).start()

    def pick(self) -> Target | None:
        """The next target (round robin), counted in flight until ``flights.done``."""
        # self.targets is replaced whole by sync(), never changed in place
        return self.flights.pick(lambda: self.targets, next(self._turn))

    def _answer(self, client: socket.socket, code: int, reason: str, *, unread: bool = False) -> None:
        """An answer of the load balancer itself, counted as CloudWatch counts it. ``unread``: the
        request has not been read yet; it is first (closing on unread bytes resets the connection,
        and the client may lose the answer)."""
        self.meter.elb(self.load_balancer_arn, code)
        if unread:
            _read_head(client)
        with contextlib.suppress(OSError):
            client.sendall(_answer(code, reason))

    def _redirect(self, client: socket.socket, redirect: Redirect) -> None:
        head = _read_head(client)
        if head is None:
            return
        port = self.port_of(self.load_balancer_arn, redirect.port) or redirect.port
        with contextlib.suppress(OSError):
            client.sendall(_redirect_answer(head, redirect, port))

    def _relay(self, client: socket.socket) -> None:
        if self.redirect is not None:
            with client:
                self._redirect(client, self.redirect)
            return
        if self.tls is not None:
            try:
                client.settimeout(CONNECT_TIMEOUT)
                client = self.tls.wrap_socket(client, server_side=True)
                client.settimeout(None)
            except (OSError, ssl.SSLError) as exc:
                log.info("load balancer %s: TLS handshake failed: %s", self.load_balancer, exc)
                client.close()
                return
        with client:
            target = self.pick()
            if target is None:
                self._answer(client, 503, "Service Temporarily Unavailable", unread=True)
                return
            once = threading.Lock()

            def release() -> None:
                """The target is done with: its connection closed (or never made)."""
                if once.acquire(blocking=False):
                    self.flights.done(target)

            try:
                self._forward(client, target, release)
            finally:
                release()

    def _forward(self, client: socket.socket, target: Target, release: Callable[[], None]) -> None:
        """Relay the client's request to ``target`` and its answer back (502/504 when it cannot);
        ``release`` once the target closed its side (the client may keep its own open)."""
        try:
            upstream = kernel.in_netns(
                target.netns_file,
                lambda: socket.create_connection((HOST, target.port), timeout=CONNECT_TIMEOUT),
                name="lb-connect",
            )
        except TimeoutError:
            self._answer(client, 504, "Gateway Time-out", unread=True)
            return
        except Exception as exc:  # whatever kept the target out of reach: 502
            # never a reset: closing the client with its request unread would reset it, and an
            # ALB answers 502 for a target it cannot reach (its namespace gone: the instance ended)
            if not isinstance(exc, OSError):
                name, instance = self.load_balancer, target.instance_id
                log.warning("load balancer %s: target %s unreachable: %s", name, instance, exc)
            self._answer(client, 502, "Bad Gateway", unread=True)
            return
        methods: collections.deque[str] = collections.deque()
        requests = Framing("request", lambda words: None, methods)

        def counted(words: list[str]) -> None:
            self.meter.target(self.load_balancer_arn, target.target_group_arn, int(words[1]))

        answers = Framing("response", counted, methods)
        with upstream:
            upstream.settimeout(None)
            if isinstance(client, ssl.SSLSocket):
                if _pump(client, upstream, requests, answers) == 0 and methods:
                    self._answer(client, 502, "Bad Gateway")
                return

            def back() -> None:
                if _pipe(upstream, client, answers) == 0 and methods:
                    self._answer(client, 502, "Bad Gateway")  # closed without answering
                release()
                _shut(client)

            thread = threading.Thread(target=back, name="lb-back", daemon=True)
            thread.start()
            _pipe(client, upstream, requests)
            _shut(upstream)
            thread.join()

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
        #: every listener's answers (a load balancer's metrics add up its listeners)
        self.meter = Meter()
        #: every listener's requests in flight, per instance
        self.flights = InFlight()

    def sync(self, wanted: dict[str, Route]) -> None:
        """``wanted``: listener ARN -> what it does (healthy targets, certificate, redirect)."""
        for arn in [a for a in self.listeners if a not in wanted]:
            self.listeners.pop(arn).close()
        for arn, route in wanted.items():
            listener = self.listeners.get(arn)
            if listener is not None and listener.declared != route.port:
                self.listeners.pop(arn).close()  # ModifyListener moved it: answer on the new port
                listener = None
            if listener is None:
                listener = Listener(
                    arn, route.name, route.dns_name, 0, _bind(route.port), route.load_balancer_arn, self.meter
                )
                listener.port = int(listener.sock.getsockname()[1])
                listener.declared = route.port
                listener.port_of = self.port_of
                listener.flights = self.flights
                self.listeners[arn] = listener
                threading.Thread(target=listener.serve, name=f"lb-{route.name}", daemon=True).start()
                log.info(
                    "load balancer %s (%s): listener %d answers on %s",
                    route.name,
                    route.dns_name,
                    route.port,
                    f"{'https' if route.certificate else 'http'}://{HOST}:{listener.port}",
                )
            if route.certificate != listener.certificate:
                listener.tls = route.certificate.context() if route.certificate else None
                listener.certificate = route.certificate
            listener.redirect = route.redirect
            listener.targets = route.targets

    def port_of(self, load_balancer_arn: str, port: int) -> int | None:
        """The local port of the load balancer's listener on ``port``."""
        for listener in list(self.listeners.values()):
            if listener.load_balancer_arn == load_balancer_arn and listener.declared == port:
                return listener.port
        return None

    def describe(self) -> list[dict[str, object]]:
        return [
            {
                "load_balancer": lst.load_balancer,
                "dns_name": lst.dns_name,
                "listener_arn": arn,
                "url": lst.url,
                "port": lst.declared,
                "redirect": f"{lst.redirect.status} to {lst.redirect.protocol} {lst.redirect.port}"
                if lst.redirect
                else None,
                "healthy_targets": [t.instance_id for t in lst.targets],
            }
            for arn, lst in self.listeners.items()
        ]

    def close(self) -> None:
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()
