"""The emulator's throttling knob: which requests it answers, and how (baker/local/moto/throttling.py)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from baker.local.moto.throttling import Throttle, wsgi


def request(service: str) -> dict[str, Any]:
    auth = f"AWS4-HMAC-SHA256 Credential=123456789012/20260101/us-east-1/{service}/aws4_request, Signature=x"
    return {"HTTP_AUTHORIZATION": auth, "CONTENT_LENGTH": "3", "wsgi.input": io.BytesIO(b"a=b")}


def test_the_share_is_spread_evenly_and_counted_per_code():
    t = Throttle()
    t.set(share=0.5)
    answers = [t.answer(request("ec2")) for _ in range(10)]
    assert [a is not None for a in answers] == [False, True] * 5  # every second one
    t.set(share=1 / 3)
    assert sum(t.answer(request("autoscaling")) is not None for _ in range(9)) == 3
    assert t.describe()["throttled"] == {"RequestLimitExceeded": 5, "Throttling": 3}
    assert t.answer(request("s3")) is None and t.answer({}) is None  # only the four services


def test_a_window_ends_by_itself_and_zero_turns_it_off():
    t = Throttle()
    t.set(share=1.0, seconds=0.001)
    import time

    time.sleep(0.01)
    assert t.answer(request("ec2")) is None
    t.set(share=1.0, seconds=0)
    assert t.answer(request("dynamodb")) is not None
    t.set(share=0)
    assert t.answer(request("dynamodb")) is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        t.set(share=2)


def test_each_protocol_answers_its_own_way():
    from baker.local.moto import throttling as throttle

    throttle.THROTTLE.set(share=1.0, seconds=0)
    try:
        app = wsgi(lambda environ, start: [b"moto"])
        seen: list[tuple[str, list[tuple[str, str]]]] = []
        body = b"".join(app(request("dynamodb"), lambda status, headers: seen.append((status, headers))))
        assert seen[0][0] == "400 Bad Request"
        assert json.loads(body)["__type"].endswith("#ThrottlingException")
        body = b"".join(app(request("ec2"), lambda status, headers: None))
        assert b"<Code>RequestLimitExceeded</Code>" in body and b"<Errors>" in body
        body = b"".join(app(request("elasticloadbalancing"), lambda status, headers: None))
        assert b"<ErrorResponse>" in body and b"<Code>Throttling</Code>" in body
    finally:
        throttle.THROTTLE.set(share=0, seconds=0)
