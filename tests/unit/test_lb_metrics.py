"""The local load balancer's counting: HTTP framing of relayed bytes, the meter, and the
CloudWatch datapoints it becomes (baker/local/lb.py, baker/local/moto/metrics.py)."""

from __future__ import annotations

import collections
import http.client
import threading
from datetime import datetime

from baker.local.lb import Framing, Listener, Meter, Target, _bind
from baker.local.moto.metrics import datapoints, load_balancer_dimension, target_group_dimension

LB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web-lb/50dc6c495c0c9188"
TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-green/943f017f100becff"


def answers(stream: bytes, methods: list[str], *, pieces: int = 1) -> list[str]:
    """The status codes a response Framing sees in ``stream``, fed in ``pieces`` byte slices."""
    seen: list[str] = []
    framing = Framing("response", lambda words: seen.append(words[1]), collections.deque(methods))
    step = max(1, len(stream) // pieces) if pieces > 1 else len(stream)
    for i in range(0, len(stream), step):
        framing.feed(stream[i : i + step])
    return seen


KEEP_ALIVE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n1\r\n"
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;ext=1\r\nboom\r\n0\r\nX-Trailer: t\r\n\r\n"
    b"HTTP/1.1 204 No Content\r\n\r\n"
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\n\r\n"
    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
)


def test_every_answer_of_a_kept_alive_connection_is_seen_however_the_bytes_arrive():
    methods = ["GET", "POST", "DELETE", "HEAD", "GET"]
    expected = ["200", "100", "500", "204", "503", "502"]
    for pieces in (1, 3, 7, len(KEEP_ALIVE)):
        assert answers(KEEP_ALIVE, methods, pieces=pieces) == expected, pieces


def test_an_answer_to_head_has_no_body_whatever_its_content_length():
    stream = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"
    assert answers(stream, ["HEAD", "GET"]) == ["200", "500"]


def test_a_body_until_close_or_an_upgrade_ends_the_counting_not_the_relay():
    assert answers(b"HTTP/1.0 500 Oops\r\n\r\nHTTP/1.1 500 not an answer\r\n\r\n", ["GET"]) == ["500"]
    upgrade = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nHTTP/1.1 500 x\r\n\r\n"
    assert answers(upgrade, ["GET"]) == []


def test_requests_give_the_methods_in_order_and_skip_their_bodies():
    methods: collections.deque[str] = collections.deque()
    framing = Framing("request", lambda words: None, methods)
    framing.feed(b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /")
    framing.feed(
        b" HTTP/1.1\r\n\r\nPUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    framing.feed(b"HEAD /d HTTP/1.1\r\nHost: x\r\n\r\n")
    assert list(methods) == ["POST", "GET", "PUT", "HEAD"]


def test_the_meter_counts_by_second_target_group_and_class_and_forgets_old_seconds():
    now = [1000.0]
    meter = Meter(clock=lambda: now[0], keep=120)
    meter.target(LB, TG, 500)
    meter.target(LB, TG, 503)
    meter.target(LB, TG, 200)
    meter.target(LB, TG, 101)  # an interim answer is no answer
    meter.elb(LB, 503)
    meter.elb(LB, 404)  # not a 5xx: no ELB 5xx metric
    assert meter.rows() == [
        (1000, LB, "", "HTTPCode_ELB_503_Count", 1),
        (1000, LB, "", "HTTPCode_ELB_5XX_Count", 1),
        (1000, LB, TG, "HTTPCode_Target_2XX_Count", 1),
        (1000, LB, TG, "HTTPCode_Target_5XX_Count", 2),
    ]
    now[0] = 1200.0
    meter.elb(LB, 502)
    assert [r[0] for r in meter.rows()] == [1200, 1200]


def test_datapoints_have_aws_dimension_names_and_values():
    assert load_balancer_dimension(LB) == "app/web-lb/50dc6c495c0c9188"
    assert target_group_dimension(TG) == "targetgroup/web-green/943f017f100becff"
    rows = [
        (1000, LB, TG, "HTTPCode_Target_5XX_Count", 2),
        (1000, LB, TG.replace("web-green", "web-blue"), "HTTPCode_Target_5XX_Count", 1),
        (1000, LB, "", "HTTPCode_ELB_5XX_Count", 4),
        (1000, LB.replace("123456789012", "210987654321"), "", "HTTPCode_ELB_5XX_Count", 9),
    ]
    points = {
        (metric, tuple((d["Name"], d["Value"]) for d in dims)): (when, n)
        for metric, dims, when, n in datapoints(rows, "123456789012", "us-east-1")
    }
    lb = ("LoadBalancer", "app/web-lb/50dc6c495c0c9188")
    green = ("TargetGroup", "targetgroup/web-green/943f017f100becff")
    blue = ("TargetGroup", "targetgroup/web-blue/943f017f100becff")
    at = datetime(1970, 1, 1, 0, 16, 40)
    assert points == {
        ("HTTPCode_Target_5XX_Count", (lb, green)): (at, 2),
        ("HTTPCode_Target_5XX_Count", (lb, blue)): (at, 1),
        ("HTTPCode_Target_5XX_Count", (lb,)): (at, 3),
        ("HTTPCode_ELB_5XX_Count", (lb,)): (at, 4),
    }
    assert datapoints(rows, "123456789012", "us-west-2") == []


def test_a_target_out_of_reach_gets_the_client_a_502_never_a_reset(tmp_path):
    """A target whose instance ended between the pick and the connect (its namespace no longer
    one): the client is answered 502, as an ALB answers, not reset with its request unread."""
    not_a_namespace = tmp_path / "net"
    not_a_namespace.write_text("")
    sock = _bind(0)
    gone = Target(instance_id="i-ended", netns_file=str(not_a_namespace), port=8080, target_group_arn=TG)
    listener = Listener(
        arn=f"{LB}/listener",
        load_balancer="web-lb",
        dns_name="web-lb.example",
        port=int(sock.getsockname()[1]),
        sock=sock,
        load_balancer_arn=LB,
        targets=[gone],
    )
    threading.Thread(target=listener.serve, daemon=True).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", listener.port, timeout=5)
        conn.request("GET", "/version")
        answer = conn.getresponse()
        assert (answer.status, answer.reason) == (502, "Bad Gateway")
        conn.close()
    finally:
        listener.close()
