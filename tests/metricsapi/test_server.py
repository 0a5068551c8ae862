"""The metrics API over real TLS: request-header auth, token review, authorization, answers."""

from __future__ import annotations

import datetime
import json
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from llmsvc.metricsapi.auth import (
    ACCESS_REVIEWS,
    TOKEN_REVIEWS,
    Delegate,
    RequestHeaderConfig,
    parse_config,
)
from llmsvc.metricsapi.certs import self_signed
from llmsvc.metricsapi.queue import Reading
from llmsvc.metricsapi.server import create_app, parse_selector, tls_context

Obj = dict[str, Any]
PATH = "/apis/external.metrics.k8s.io/v1beta1"


def _cert(cn: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: Any, ca: bool) -> str:
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class FrontProxy:
    """A request-header CA and client certificates it signed (as the kube-apiserver has)."""

    ca: str
    ca_key: ec.EllipticCurvePrivateKey

    @classmethod
    def make(cls) -> FrontProxy:
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(_cert("front-proxy-ca", key, "front-proxy-ca", key, ca=True), key)

    def client(self, cn: str, folder: Path) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert, key_file = folder / f"{cn}.crt", folder / f"{cn}.key"
        cert.write_text(_cert(cn, key, "front-proxy-ca", self.ca_key, ca=False))
        key_file.write_text(_key_pem(key))
        return cert, key_file


class Readings:
    """Fixed readings (the scraper's interface)."""

    def __init__(self, readings: dict[str, Reading]) -> None:
        self._readings = readings

    def reading(self, namespace: str, name: str) -> Reading | None:
        return self._readings.get(name) if namespace == "ns" else None

    def services(self, namespace: str) -> list[str]:
        return sorted(self._readings) if namespace == "ns" else []


class FakeApiServer:
    """Answers TokenReviews and SubjectAccessReviews like a small RBAC setup would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Obj]] = []

    async def post(self, url: str, body: Obj) -> Obj:
        self.calls.append((url, body))
        if url == TOKEN_REVIEWS:
            known = body["spec"]["token"] == "good-token"
            user = {"username": "system:serviceaccount:ns:reader", "groups": ["g"]}
            return {"status": {"authenticated": known, "user": user if known else {}}}
        assert url == ACCESS_REVIEWS
        return {"status": {"allowed": body["spec"]["user"] != "mallory"}}


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, FrontProxy, FakeApiServer, Path]]:
    proxy = FrontProxy.make()
    serving = self_signed("llmsvc-operator", "llmsvc-system")
    readings = Readings(
        {
            "alpha": Reading(7.0, 1_700_000_000.0, (), 2),
            "beta": Reading(None, 0.0, ("router pod beta-router-x: scrape failed",)),
        }
    )
    config = RequestHeaderConfig(proxy.ca, allowed_names=("front-proxy-client",))
    api = FakeApiServer()
    app = create_app(readings, config, Delegate(api.post))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(
        runner, "127.0.0.1", 0, ssl_context=tls_context(serving.cert, serving.key, proxy.ca)
    )
    await site.start()
    port = runner.addresses[0][1]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "serving-ca.crt").write_text(serving.ca)
        yield f"https://localhost:{port}", proxy, api, folder
    await runner.cleanup()


def client_ssl(folder: Path, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(folder / "serving-ca.crt"))
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


async def fetch(url: str, context: ssl.SSLContext, headers: dict[str, str]) -> tuple[int, Obj]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=context, headers=headers) as response,
    ):
        return response.status, json.loads(await response.text())


PROXIED = {"X-Remote-User": "system:kube-controller-manager", "X-Remote-Group": "system:auth"}


async def test_the_aggregator_reads_a_service_queue_through_its_proxy_certificate(
    served: tuple[str, FrontProxy, FakeApiServer, Path],
) -> None:
    base, proxy, api, folder = served
    context = client_ssl(folder, proxy.client("front-proxy-client", folder))
    url = f"{base}{PATH}/namespaces/ns/llmsvc_queue_length?labelSelector=llmsvc.io/name%3Dalpha"
    code, body = await fetch(url, context, PROXIED)
    assert code == 200
    assert body["kind"] == "ExternalMetricValueList"
    (item,) = body["items"]
    assert (item["value"], item["metricLabels"]) == ("7", {"llmsvc.io/name": "alpha"})
    review = api.calls[-1][1]["spec"]
    assert review["user"] == "system:kube-controller-manager"
    assert review["groups"] == ["system:auth", "system:authenticated"]
    assert review["resourceAttributes"]["resource"] == "llmsvc_queue_length"
    code, body = await fetch(f"{base}{PATH}", context, PROXIED)
    assert (code, body["resources"][0]["name"]) == (200, "llmsvc_queue_length")


async def test_missing_data_is_a_503_that_says_why_never_a_zero(
    served: tuple[str, FrontProxy, FakeApiServer, Path],
) -> None:
    base, proxy, _, folder = served
    context = client_ssl(folder, proxy.client("front-proxy-client", folder))
    url = f"{base}{PATH}/namespaces/ns/llmsvc_queue_length?labelSelector=llmsvc.io/name=beta"
    code, body = await fetch(url, context, PROXIED)
    assert code == 503
    assert "missing (not zero)" in body["message"]
    assert "beta-router-x: scrape failed" in body["message"]


@pytest.mark.parametrize(
    ("cn", "headers", "expected"),
    [
        (None, PROXIED, 401),  # identity headers without the proxy's certificate
        ("someone-else", PROXIED, 401),  # a certificate of the CA, but not an allowed name
        ("front-proxy-client", {}, 401),  # the proxy, but no user
        ("front-proxy-client", {"X-Remote-User": "mallory"}, 403),  # RBAC says no
        (None, {"Authorization": "Bearer bad-token"}, 401),
        (None, {"Authorization": "Bearer good-token"}, 200),
    ],
)
async def test_authentication_and_authorization(
    served: tuple[str, FrontProxy, FakeApiServer, Path],
    cn: str | None,
    headers: dict[str, str],
    expected: int,
) -> None:
    base, proxy, _, folder = served
    context = client_ssl(folder, proxy.client(cn, folder) if cn else None)
    code, body = await fetch(f"{base}{PATH}/namespaces/ns/llmsvc_queue_length", context, headers)
    assert code == expected, body
    if expected != 200:
        assert body["kind"] == "Status"


async def test_decisions_are_cached_briefly() -> None:
    api = FakeApiServer()
    delegate = Delegate(api.post, ttl=10.0, clock=lambda: 0.0)
    for _ in range(3):
        assert await delegate.authenticate("good-token") is not None
    assert len(api.calls) == 1


def test_parse_config_reads_the_configmap_and_says_what_is_missing() -> None:
    data = {
        "requestheader-client-ca-file": "-----BEGIN CERTIFICATE-----\n...",
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
    }
    config = parse_config(data)
    assert config.allowed_names == ("front-proxy-client",)
    with pytest.raises(ValueError, match="--requestheader-client-ca-file"):
        parse_config({"client-ca-file": "x"})
    with pytest.raises(ValueError, match="not a list of strings"):
        parse_config({**data, "requestheader-allowed-names": '{"a": 1}'})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("llmsvc.io/name=a", [("llmsvc.io/name", "a", True)]),
        ("llmsvc.io/name==a,x!=b", [("llmsvc.io/name", "a", True), ("x", "b", False)]),
        ("", []),
    ],
)
def test_parse_selector(text: str, expected: list[tuple[str, str, bool]]) -> None:
    assert parse_selector(text) == expected


def test_parse_selector_rejects_set_based_selectors_with_what_to_use() -> None:
    with pytest.raises(ValueError, match="equality only"):
        parse_selector("llmsvc.io/name in (a,b)")


def test_self_signed_names_long_services_in_the_sans_not_the_common_name() -> None:
    namespace = "e2e-test-a-stopped-engine-or-router-is-missing-d-4f2a1b"
    serving = self_signed("llmsvc-metrics-api", namespace)
    cert = x509.load_pem_x509_certificate(serving.cert.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"llmsvc-metrics-api.{namespace}.svc" in sans.get_values_for_type(x509.DNSName)
