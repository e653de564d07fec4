"""A certificate the local cloud's HTTPS listeners can serve and a client can trust (gap 18).

AWS: an HTTPS listener names an ACM certificate by ARN (Elastic Load Balancing, Application Load
Balancers guide, "SSL certificates"); ACM holds certificates it issued (RequestCertificate,
validated through DNS or e-mail) and imported ones (ACM User Guide, "Importing certificates":
the certificate, its private key and chain; GetCertificate returns the certificate and chain).
moto imports certificates, but what it issues is signed by no CA a client has, and a
certificate's ARN is random, so a checked-in environment file cannot name one.

Here, in every account and region, the ARN ``arn:aws:acm:<region>:<account>:certificate/`` +
``LOCAL_ID`` names the local cloud's own certificate: made when first asked for (ImportCertificate
is not needed), for ``*.elb.amazonaws.com``, ``localhost`` and ``127.0.0.1``, signed by a CA the
emulator made at start and kept only in its memory (no key on disk). GetCertificate returns that
CA as the chain: ``curl --cacert`` it. A certificate imported with ImportCertificate serves as it is.
"""

from __future__ import annotations

import datetime
import ipaddress
import threading
from typing import Any

#: the certificate id every account and region of the local cloud holds (environments/prod.yml)
LOCAL_ID = "00000000-0000-4000-8000-00000000b4e5"
NAMES = ("*.elb.amazonaws.com", "localhost")

_lock = threading.Lock()
_issued: tuple[bytes, bytes, bytes] | None = None


def local_arn(region: str, account_id: str) -> str:
    return f"arn:aws:acm:{region}:{account_id}:certificate/{LOCAL_ID}"


def issue() -> tuple[bytes, bytes, bytes]:
    """(certificate, private key, CA certificate) in PEM, made once per emulator process."""
    global _issued
    with _lock:
        if _issued is None:
            _issued = _make()
        return _issued


def _make() -> tuple[bytes, bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "baker local cloud CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAMES[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in NAMES] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return leaf.public_bytes(pem), key_pem, ca.public_bytes(pem)


def _materialize(backend: Any, arn: str) -> None:
    """The local certificate at ``arn`` when it is asked for and not there yet."""
    from moto.acm.models import CertBundle

    if not arn.endswith("/" + LOCAL_ID) or arn in backend._certificates:
        return
    if arn != local_arn(backend.region_name, backend.account_id):
        return  # another account's or region's ARN: not found, as on AWS
    cert, key, ca = issue()
    backend._certificates[arn] = CertBundle(
        backend.account_id, cert, key, chain=ca, region=backend.region_name, arn=arn
    )


def install() -> None:
    from moto.acm.models import AWSCertificateManagerBackend as ACM

    get_certificate = ACM.get_certificate
    in_use_by = ACM.set_certificate_in_use_by

    def get(self: Any, arn: str) -> Any:
        _materialize(self, arn)
        return get_certificate(self, arn)

    def used(self: Any, arn: str, load_balancer_name: str) -> None:
        _materialize(self, arn)
        in_use_by(self, arn, load_balancer_name)

    ACM.get_certificate = get  # type: ignore[method-assign]
    ACM.set_certificate_in_use_by = used  # type: ignore[method-assign]
