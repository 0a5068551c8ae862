"""A self-signed serving certificate for the metrics API (the default without cert-manager).

A CA made at start signs a serving certificate for the operator's Service DNS names; the CA's
PEM goes into the APIService's ``caBundle`` so the kube-apiserver can verify us. Nothing is
stored: a restart makes a new pair and patches the bundle again.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
MAX_CN = 64  # X.509 upper bound of a common name


@dataclass(frozen=True)
class ServingCert:
    """PEM texts of the CA certificate, the serving certificate and its key."""

    ca: str
    cert: str
    key: str


def dns_names(service: str, namespace: str) -> list[str]:
    """Every name the API server may use for ``service`` in ``namespace``."""
    base = f"{service}.{namespace}"
    return [service, base, f"{base}.svc", f"{base}.svc.cluster.local", "localhost"]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def self_signed(service: str, namespace: str) -> ServingCert:
    """A fresh CA and a serving certificate for the Service (and 127.0.0.1, for local runs)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = f"llmsvc-metrics-ca@{int(datetime.datetime.now(datetime.UTC).timestamp())}"
    ca = (
        _builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names(service, namespace)]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        _builder(service[:MAX_CN], ca_name, key)  # the names that matter are the SANs
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return ServingCert(_pem(ca), _pem(cert), key_pem)
