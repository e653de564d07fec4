"""The emulator answers a retry of a call it carried out already with the first answer."""

from __future__ import annotations

import io
from typing import Any

from baker.local.moto import retries


class Counting:
    """A WSGI app that carries out each call it gets: it adds a rule, a second one is a duplicate."""

    def __init__(self) -> None:
        self.rules: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        rule = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
        if rule in self.rules:
            start_response("400 Bad Request", [("Content-Type", "text/xml")])
            return [b"<Code>InvalidPermission.Duplicate</Code>"]
        self.rules.append(rule)
        start_response("200 OK", [("Content-Type", "text/xml")])
        return [f"<return>true</return><rule>{rule}</rule>".encode()]


def call(app: Any, body: bytes, invocation: str | None, attempt: int) -> tuple[str, bytes]:
    environ: dict[str, Any] = {"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    if invocation:
        environ["HTTP_AMZ_SDK_INVOCATION_ID"] = invocation
        environ["HTTP_AMZ_SDK_REQUEST"] = f"attempt={attempt}; max=25"
    said: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        said["status"] = status

    body = b"".join(app(environ, start_response))
    return said["status"], body


def test_a_retry_of_a_call_carried_out_gets_its_first_answer_and_is_not_carried_out_again():
    moto = Counting()
    app = retries.wsgi(moto, retries.Answers())
    first = call(app, b"-1 0.0.0.0/0", "inv-1", 1)
    assert first == ("200 OK", b"<return>true</return><rule>-1 0.0.0.0/0</rule>")
    assert call(app, b"-1 0.0.0.0/0", "inv-1", 2) == first, "the lost answer, not a duplicate"
    assert moto.rules == ["-1 0.0.0.0/0"]


def test_a_new_call_is_carried_out_so_a_real_duplicate_still_fails_as_on_aws():
    moto = Counting()
    app = retries.wsgi(moto, retries.Answers())
    call(app, b"tcp 80", "inv-1", 1)
    assert call(app, b"tcp 80", "inv-2", 1)[0] == "400 Bad Request"
    assert call(app, b"tcp 80", None, 1)[0] == "400 Bad Request", "no invocation id: carried out"


def test_a_failed_attempt_is_not_kept_and_its_retry_is_carried_out():
    moto = Counting()
    answers = retries.Answers()
    app = retries.wsgi(moto, answers)
    moto.rules.append("tcp 443")
    assert call(app, b"tcp 443", "inv-9", 1)[0] == "400 Bad Request"
    moto.rules.clear()
    assert call(app, b"tcp 443", "inv-9", 2)[0] == "200 OK"
    assert answers.replayed == 0


def test_only_the_latest_answers_are_kept():
    answers = retries.Answers(keep=2)
    for n in range(3):
        answers.put(f"inv-{n}", ("200 OK", [], b""))
    assert answers.get("inv-0") is None and answers.get("inv-2") is not None
