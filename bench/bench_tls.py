"""What TLS costs at the local load balancer: connect + handshake + first byte of the answer through
an HTTPS listener (the local cloud's own certificate, ELBSecurityPolicy-TLS13-1-2-2021-06) against
connect + first byte through a plain HTTP listener, to the same target.

The listeners are baker.local.lb's, as the emulator runs them (a Route each, synced); the target is
a small HTTP server on loopback in this namespace (the listeners reach it by entering the network
namespace this process runs in), so the figures are the load balancer's, not an instance's boot or
app. One connection per request, as curl makes them; requests alternate between the two listeners.

Run as root: ``python bench/bench_tls.py [--requests N]``. It makes a loopback-only network
namespace of its own and deletes it at the end.
"""

from __future__ import annotations

import argparse
import http.server
import os
import socket
import ssl
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from baker.local import netns  # noqa: E402
from baker.local.lb import Certificate, LoadBalancers, Route, Target  # noqa: E402
from baker.local.moto import certificates  # noqa: E402

REQUEST = b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


class Version(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"1.0.0\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def first_byte(port: int, tls: ssl.SSLContext | None) -> float:
    """Seconds from connect to the answer's first byte (the handshake included with ``tls``)."""
    started = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
    with sock:
        sock.sendall(REQUEST)
        first = sock.recv(1)
        took = time.perf_counter() - started
        while sock.recv(65536):
            pass
    if first != b"H":
        raise SystemExit(f"unexpected answer on port {port}: {first!r}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="per listener")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_tls needs root (network namespace)")
    name = f"baker-bench-tls-{os.getpid()}"
    netns.create(name)
    try:
        netns.enter(name)
        app = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Version)
        threading.Thread(target=app.serve_forever, daemon=True).start()
        target = Target("i-bench", f"/proc/{os.getpid()}/ns/net", app.server_address[1], "tg")
        cert, key, ca = certificates.issue()
        tls_route = Certificate("cert", cert, b"", key, "ELBSecurityPolicy-TLS13-1-2-2021-06")
        lbs = LoadBalancers()
        lbs.sync(
            {
                "http": Route("lb", "bench", "bench.elb", 8080, [target]),
                "https": Route("lb", "bench", "bench.elb", 8443, [target], certificate=tls_route),
            }
        )
        plain_port, tls_port = lbs.listeners["http"].port, lbs.listeners["https"].port
        client = ssl.create_default_context(cadata=ca.decode())
        for _ in range(20):  # warm up both paths
            first_byte(plain_port, None), first_byte(tls_port, client)
        plain, tls = [], []
        for _ in range(args.requests):
            plain.append(first_byte(plain_port, None))
            tls.append(first_byte(tls_port, client))
        raw = socket.create_connection(("127.0.0.1", tls_port))
        with client.wrap_socket(raw, server_hostname="127.0.0.1") as probe:
            version, cipher = probe.version(), (probe.cipher() or ("?",))[0]
        lbs.close()
        app.shutdown()
        print(f"requests per listener: {args.requests} (one connection each), TLS: {version} {cipher}")
        for label, values in (("plain HTTP", plain), ("HTTPS (handshake included)", tls)):
            ms = sorted(v * 1000 for v in values)
            print(
                f"{label:28s} first byte: median {statistics.median(ms):.2f} ms, "
                f"p95 {ms[int(len(ms) * 0.95) - 1]:.2f} ms, max {ms[-1]:.2f} ms"
            )
        print(f"TLS adds (median): {(statistics.median(tls) - statistics.median(plain)) * 1000:.2f} ms")
    finally:
        netns.delete(name)


if __name__ == "__main__":
    main()
