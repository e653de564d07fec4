#!/usr/bin/python3
"""hello-web: the example app baker packages, bakes and deploys.

A deliberately small, real HTTP service (standard library only) with what a health-gated rollout
needs: /healthz for the load balancer, /version to see which release answers, and switches that
rehearse a bad release: HELLO_UNHEALTHY=1 makes /healthz fail, HELLO_BROKEN_PATHS makes the app
fail its users while /healthz stays healthy.

Settings come from the environment, which systemd fills from /etc/default/hello-web:

    HELLO_BIND       address to listen on (default 0.0.0.0)
    HELLO_PORT       port (default 8080; 0 picks a free one, printed at start)
    HELLO_GREETING   what / answers
    HELLO_UNHEALTHY  "1" (or true/yes/on) makes /healthz answer 503
    HELLO_BROKEN_PATHS  comma-separated paths (e.g. "/version,/") answered 500: a release that
                     passes its health checks and fails its users, what a blue/green traffic
                     step's 5xx watch is for
"""

from __future__ import annotations

import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION_FILE = Path(__file__).resolve().parent / "VERSION"


def read_version() -> str:
    """The .deb version the package wrote next to this script; 'unknown' when run from source."""
    try:
        return VERSION_FILE.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class Settings:
    def __init__(self, environ: dict[str, str]) -> None:
        self.bind = environ.get("HELLO_BIND", "0.0.0.0") or "0.0.0.0"  # noqa: S104 - behind the load balancer
        port = environ.get("HELLO_PORT", "8080") or "8080"
        if not port.isdigit() or int(port) > 65535:
            raise SystemExit(f"hello-web: HELLO_PORT must be a port number, got {port!r}")
        self.port = int(port)
        self.greeting = environ.get("HELLO_GREETING", "hello from hello-web")
        self.unhealthy = flag(environ.get("HELLO_UNHEALTHY"))
        self.broken = {p.strip() for p in environ.get("HELLO_BROKEN_PATHS", "").split(",") if p.strip()}
        self.version = read_version()


class Handler(BaseHTTPRequestHandler):
    server_version = "hello-web"
    settings: Settings

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in self.settings.broken:
            self.answer(500, "broken (HELLO_BROKEN_PATHS)")
        elif path == "/healthz":
            if self.settings.unhealthy:
                self.answer(503, "unhealthy")
            else:
                self.answer(200, "ok")
        elif path == "/version":
            self.answer(200, self.settings.version)
        elif path == "/":
            self.answer(200, self.settings.greeting)
        else:
            self.answer(404, "not found")

    def do_HEAD(self) -> None:
        self.do_GET()

    def answer(self, status: int, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, settings: Settings) -> None:
        if ":" in settings.bind:
            self.address_family = socket.AF_INET6
        handler = type("BoundHandler", (Handler,), {"settings": settings})
        super().__init__((settings.bind, settings.port), handler)


def main() -> None:
    settings = Settings(dict(os.environ))
    server = Server(settings)
    host, port = server.server_address[:2]
    print(f"hello-web {settings.version} listening on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
