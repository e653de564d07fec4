"""Fault injection: the emulator answers a share of AWS requests with a throttling error.

AWS throttles a caller that asks too often; every client must retry with backoff (botocore's retry
modes, the Terraform provider's retryer) rather than fail. moto never throttles, so this knob
makes it: while ``share`` > 0 (and, with ``seconds``, until they have passed) every request to a
throttled service is counted, and the share of them spread evenly (with 0.5, every second one) is
answered as that service answers a throttled call, in its own protocol: EC2
``RequestLimitExceeded``, Auto Scaling and Elastic Load Balancing ``Throttling``, DynamoDB
``ThrottlingException``, all HTTP 400. Set through ``POST /_baker/settings`` (``throttle_share``,
``throttle_seconds``); ``throttled`` counts the answers per error code, so a test can tell that the
fault really happened.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

#: service (as SigV4 names it) -> (protocol, error code)
ERRORS = {
    "ec2": ("ec2", "RequestLimitExceeded"),
    "autoscaling": ("query", "Throttling"),
    "elasticloadbalancing": ("query", "Throttling"),
    "dynamodb": ("json", "ThrottlingException"),
}
_SERVICE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


class Throttle:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.share = 0.0
        self.until: float | None = None
        self.seen = 0
        self.throttled: dict[str, int] = {}

    def set(self, share: float | None = None, seconds: float | None = None) -> None:
        with self.lock:
            if share is not None:
                if not 0 <= share <= 1:
                    raise ValueError("throttle_share must be between 0 and 1")
                self.share, self.seen = share, 0
            if seconds is not None:
                self.until = time.monotonic() + seconds if seconds > 0 else None

    def describe(self) -> dict[str, Any]:
        with self.lock:
            left = None if self.until is None else max(0.0, round(self.until - time.monotonic(), 1))
            return {
                "throttle_share": self.share,
                "throttle_seconds_left": left,
                "throttled": dict(self.throttled),
            }

    def answer(self, environ: dict[str, Any]) -> tuple[str, bytes, str] | None:
        """(status, body, content type) of a throttling answer to this request, or None to serve it."""
        found = _SERVICE.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = found.group(1) if found else ""
        if service not in ERRORS:
            return None
        with self.lock:
            if self.share <= 0 or (self.until is not None and time.monotonic() > self.until):
                return None
            self.seen += 1
            if int(self.seen * self.share) == int((self.seen - 1) * self.share):
                return None
            protocol, code = ERRORS[service]
            self.throttled[code] = self.throttled.get(code, 0) + 1
        return "400 Bad Request", *_body(protocol, code)


def _body(protocol: str, code: str) -> tuple[bytes, str]:
    request_id = str(uuid.uuid4())
    if protocol == "json":
        doc = {
            "__type": f"com.amazonaws.dynamodb.v20120810#{code}",
            "message": "Rate of requests exceeds the allowed throughput.",
        }
        return json.dumps(doc).encode(), "application/x-amz-json-1.0"
    if protocol == "ec2":
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{code}</Code><Message>Request limit exceeded.</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
        return xml.encode(), "text/xml"
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>Rate exceeded</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return xml.encode(), "text/xml"


THROTTLE = Throttle()


def wsgi(app: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap the emulator's WSGI app: a throttled request is answered here and never reaches moto."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        throttled = THROTTLE.answer(environ)
        if throttled is None:
            return app(environ, start_response)
        status, body, content_type = throttled
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)  # the request is answered whole, as AWS does
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    return application
