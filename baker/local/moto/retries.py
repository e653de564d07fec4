"""A client's retry of a request the emulator already carried out gets the first answer again.

AWS SDKs retry a call whose answer they did not get (a connection reset, a read that timed out,
a 5xx). When the emulator had carried the call out, the retry of a call that is not idempotent
fails where the first attempt succeeded: AuthorizeSecurityGroupEgress answers
``InvalidPermission.Duplicate``, CreateSecurityGroup ``InvalidGroup.Duplicate``, and Terraform's
apply fails on a rule it created itself. On a busy machine (the test suite's workers, live
instances booting) this happened about once in five full runs.

Both botocore and the Go SDK (Terraform's provider) name each call with an
``amz-sdk-invocation-id`` header that stays the same across its attempts, and say which attempt
this is in ``amz-sdk-request: attempt=N; max=M``. The emulator keeps the last answers that
succeeded (2xx) by invocation id; a later attempt of the same invocation gets that answer instead
of being carried out twice, and the emulator's log says so. A first attempt is always carried out,
so a real duplicate still fails as it does on AWS.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

log = logging.getLogger("baker")

#: answers kept: far more than the calls in flight at any time
KEEP = 4096
_ATTEMPT = re.compile(r"attempt=(\d+)")


class Answers:
    """The successful answers of the latest invocations: (status, headers, body) by invocation id."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self.lock = threading.Lock()
        self.kept: OrderedDict[str, tuple[str, list[tuple[str, str]], bytes]] = OrderedDict()
        self.replayed = 0

    def get(self, invocation: str) -> tuple[str, list[tuple[str, str]], bytes] | None:
        with self.lock:
            return self.kept.get(invocation)

    def put(self, invocation: str, answer: tuple[str, list[tuple[str, str]], bytes]) -> None:
        with self.lock:
            self.kept[invocation] = answer
            self.kept.move_to_end(invocation)
            while len(self.kept) > self.keep:
                self.kept.popitem(last=False)


ANSWERS = Answers()


def attempt(environ: dict[str, Any]) -> int:
    found = _ATTEMPT.search(environ.get("HTTP_AMZ_SDK_REQUEST", ""))
    return int(found.group(1)) if found else 1


def wsgi(app: Callable[..., Any], answers: Answers = ANSWERS) -> Callable[..., Any]:
    """Wrap the emulator's AWS application: a retry of a call carried out gets its first answer."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        invocation = environ.get("HTTP_AMZ_SDK_INVOCATION_ID")
        if not invocation:
            return app(environ, start_response)
        n = attempt(environ)
        if n > 1:
            kept = answers.get(invocation)
            if kept is not None:
                status, headers, body = kept
                length = int(environ.get("CONTENT_LENGTH") or 0)
                if length:
                    environ["wsgi.input"].read(length)
                with answers.lock:
                    answers.replayed += 1
                log.warning(
                    "attempt %d of invocation %s was carried out already: its answer (%s) again",
                    n,
                    invocation,
                    status,
                )
                start_response(status, headers)
                return [body]
            log.info("attempt %d of invocation %s: the earlier ones got no answer kept", n, invocation)
        seen: dict[str, Any] = {}

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"], seen["headers"] = status, list(headers)
            return start_response(status, headers, exc_info)

        chunks = app(environ, keep)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if str(seen.get("status", "")).startswith("2"):
            answers.put(invocation, (seen["status"], seen["headers"], body))
        return [body]

    return application
