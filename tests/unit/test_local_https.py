"""HTTPS in the local cloud: its own certificate (baker.local.moto.certificates), which the listeners of
the example's prod and of tests/e2e/test_bluegreen_story.py serve, checked as a client would."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading

import yaml
from cryptography import x509

from baker.local.lb import Certificate, Redirect, _redirect_answer
from baker.local.moto import certificates
from tests.conftest import REPO


def test_the_example_prod_names_the_certificate_the_local_cloud_holds_in_its_account():
    prod = yaml.safe_load((REPO / "environments" / "prod.yml").read_text())
    arn = prod["deploy"]["variables"]["certificate_arn"]
    assert arn == certificates.local_arn(prod["aws"]["region"], prod["aws"]["account_id"])


def test_the_certificate_names_the_load_balancers_and_loopback_and_chains_to_its_ca():
    cert, key, ca = certificates.issue()
    assert certificates.issue() == (cert, key, ca), "one per emulator process"
    leaf = x509.load_pem_x509_certificate(cert)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["*.elb.amazonaws.com", "localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))


def test_a_listener_context_serves_it_and_a_client_trusting_the_ca_accepts_it():
    cert, key, ca = certificates.issue()
    server_ctx = Certificate("arn", cert, b"", key, "ELBSecurityPolicy-TLS13-1-2-2021-06").context()
    assert server_ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    strict = Certificate("arn", cert, b"", key, "ELBSecurityPolicy-TLS13-1-3-2021-06").context()
    assert strict.minimum_version == ssl.TLSVersion.TLSv1_3
    a, b = socket.socketpair()
    done: list[str] = []

    def serve() -> None:
        with server_ctx.wrap_socket(a, server_side=True) as s:
            done.append(s.version() or "")

    thread = threading.Thread(target=serve)
    thread.start()
    client = ssl.create_default_context(cadata=ca.decode())
    with client.wrap_socket(b, server_hostname="127.0.0.1") as c:
        assert c.getpeercert()["subject"] == ((("commonName", "*.elb.amazonaws.com"),),)
    thread.join()
    assert done and done[0] in ("TLSv1.2", "TLSv1.3")


def test_a_redirect_keeps_host_path_and_query_and_names_the_https_port():
    head = b"GET /version?x=1 HTTP/1.1\r\nHost: 127.0.0.1:80\r\nUser-Agent: curl"
    answer = _redirect_answer(head, Redirect(301, "HTTPS", 443), 443).decode()
    assert answer.startswith("HTTP/1.1 301 Moved Permanently\r\n")
    assert "\r\nLocation: https://127.0.0.1/version?x=1\r\n" in answer
    # the HTTPS listener answers on another loopback port here: the Location says which
    moved = _redirect_answer(head, Redirect(302, "HTTPS", 443), 40443).decode()
    assert moved.startswith("HTTP/1.1 302 Found") and "Location: https://127.0.0.1:40443/version?x=1" in moved
