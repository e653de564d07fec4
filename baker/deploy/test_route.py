"""Blue/green's test route: the smoke checks of the color under test, fetched through the load
balancer's test listener (which forwards to that color only), before users reach it. On AWS the
route is the listener by the load balancer's DNS name; the CLI hands in the local cloud's."""

from __future__ import annotations

import logging
import ssl
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from baker.deploy.colors import Colors
from baker.deploy.context import Context

log = logging.getLogger("baker")

#: seconds one HTTP smoke check through the test route may take
SMOKE_TIMEOUT = 5.0


def aws_test_route(colors: Colors) -> tuple[str | None, str]:
    """On AWS the test route is the load balancer's test listener, by its DNS name."""
    if colors.lb_dns_name and colors.test_port:
        return f"{colors.test_scheme}://{colors.lb_dns_name}:{colors.test_port}", ""
    return None, "the load balancer has no DNS name"


def smoke(ctx: Context, colors: Colors, color: str, *, skip: bool = False) -> list[dict[str, Any]]:
    """The ``http`` smoke checks, fetched through the test route (the test listener, which
    forwards to ``color`` only). ``ok`` None: not run, and why."""
    checks = [c for c in ctx.project.settings.smoke_checks if c.http]
    if skip:
        return [{"name": c.name, "ok": None, "output": "skipped: the color served before"} for c in checks]
    route = ctx.test_route or aws_test_route
    base, why = route(colors) if colors.test == color else (None, "not under test")
    trust = _trust(ctx, colors) if base and colors.test_certificate else None
    out: list[dict[str, Any]] = []
    for check in checks:
        assert check.http is not None
        if base is None:
            out.append({"name": check.name, "ok": None, "output": f"skipped: {why}"})
            continue
        parts = urlsplit(check.http)
        url = base.rstrip("/") + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        ok, output = fetch(url, check.expect, trust)
        log.info("smoke %s through the test route (%s): %s", check.name, url, "ok" if ok else output)
        out.append({"name": check.name, "ok": ok, "output": output, "url": url})
    return out


def _trust(ctx: Context, colors: Colors) -> ssl.SSLContext:
    """TLS through the test route: the certificate chains to a CA the system or ACM's chain has;
    not its name (the route is the load balancer's own, which the users' certificate lacks)."""
    trust = ssl.create_default_context()
    trust.check_hostname = False
    chain = ctx.aws.client("acm").get_certificate(CertificateArn=colors.test_certificate)
    trust.load_verify_locations(cadata=chain.get("CertificateChain") or chain["Certificate"])
    return trust


def fetch(url: str, expect: str | None, trust: ssl.SSLContext | None = None) -> tuple[bool, str]:
    """GET ``url`` (no proxy: the test route is the load balancer itself); 2xx and ``expect`` in the body."""
    handlers: list[Any] = [urllib.request.ProxyHandler({})]
    if trust is not None:
        handlers.append(urllib.request.HTTPSHandler(context=trust))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=SMOKE_TIMEOUT) as resp:
            body = resp.read(65536).decode("utf-8", "replace")
            code = resp.status
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if not 200 <= code < 300:
        return False, f"HTTP {code}"
    if expect and expect not in body:
        return False, f"HTTP {code}, {expect!r} not in the answer"
    return True, f"HTTP {code}"
