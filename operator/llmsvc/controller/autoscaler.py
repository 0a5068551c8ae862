"""The operator's autoscaling side: serve the metrics API and wake or idle services at zero.

Runs in the operator's own event loop (no second container): the scraper needs the same list
of LLMServices the operator watches, and one process is one thing to deploy and to watch. It
reads the aggregation layer's request-header CA from ``kube-system/extension-apiserver-
authentication``, serves ``external.metrics.k8s.io`` over TLS (a self-signed certificate whose CA
it writes into the APIService's ``caBundle``, or the files of ``--metrics-api-cert-dir``), and
moves services with ``autoscaling.minReplicas: 0`` between 0 and 1 through their ``/scale``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
from aiohttp import web
from kubernetes_asyncio.client import ApiClient

from llmsvc.controller.kube import Kube, api_client
from llmsvc.controller.runtime import Runtime
from llmsvc.metricsapi.activation import decide
from llmsvc.metricsapi.auth import CONFIGMAP, Delegate, parse_config
from llmsvc.metricsapi.certs import ServingCert, self_signed
from llmsvc.metricsapi.scraper import Ref, Scraper
from llmsvc.metricsapi.server import create_app, tls_context

Obj = dict[str, Any]
log = logging.getLogger("llmsvc.metricsapi")
APISERVICES = "/apis/apiregistration.k8s.io/v1/apiservices"
SCALE_MANAGER = "llmsvc-activator"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the metrics API (part of ``llmsvc operator``)."""
    group = parser.add_argument_group("metrics API (external.metrics.k8s.io)")
    group.add_argument(
        "--metrics-api-address",
        default="",
        metavar="HOST:PORT",
        help="serve the metrics API here over TLS (e.g. 0.0.0.0:6443); empty disables it",
    )
    group.add_argument("--metrics-api-service", default="llmsvc-operator", help="Service name")
    group.add_argument("--metrics-api-namespace", default="default", help="Service namespace")
    group.add_argument(
        "--metrics-api-apiservice",
        default="",
        help="APIService whose caBundle gets the self-signed CA (empty: leave it alone)",
    )
    group.add_argument(
        "--metrics-api-cert-dir",
        default="",
        help="directory with tls.crt and tls.key (e.g. from cert-manager) instead of self-signing",
    )
    group.add_argument(
        "--scrape-interval", type=float, default=1.0, help="seconds between queue scrapes"
    )


def load_cert(args: argparse.Namespace) -> ServingCert:
    """The serving certificate: from ``--metrics-api-cert-dir`` or freshly self-signed."""
    if args.metrics_api_cert_dir:
        folder = Path(args.metrics_api_cert_dir)
        ca = folder / "ca.crt"
        return ServingCert(
            ca.read_text() if ca.exists() else "",
            (folder / "tls.crt").read_text(),
            (folder / "tls.key").read_text(),
        )
    return self_signed(args.metrics_api_service, args.metrics_api_namespace)


async def call(api: ApiClient, method: str, url: str, body: Any = None, patch: str = "") -> Obj:
    """One API request with plain-dict bodies."""
    content = patch or "application/json"
    result = await api.call_api(
        url,
        method,
        body=body,
        query_params=[("fieldManager", SCALE_MANAGER)] if method == "PATCH" else [],
        header_params={"Content-Type": content, "Accept": "application/json"},
        auth_settings=["BearerToken"],
        response_types_map={200: "object", 201: "object"},
        _return_http_data_only=True,
        _request_timeout=30,
    )
    return dict(result or {})


@dataclass
class Autoscaler:
    """The metrics API server, its scraper and the 0 <-> 1 activator."""

    args: argparse.Namespace
    runtime: Runtime
    scraper: Scraper | None = None
    idle_since: dict[Ref, float] = field(default_factory=dict)
    _api: ApiClient | None = None
    _runner: web.AppRunner | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        """Read the request-header CA, start serving, scraping and activating."""
        self._api = api = await api_client()
        config = parse_config((await call(api, "GET", CONFIGMAP)).get("data") or {})
        cert = load_cert(self.args)
        if self.args.metrics_api_apiservice and cert.ca:
            await self._patch_ca_bundle(api, cert.ca)
        namespaces = self.args.namespace or None
        self.scraper = Scraper(
            Kube(api),
            lambda: namespaces or {ns for ns, _ in self.runtime.known},
            interval=self.args.scrape_interval,
        )
        delegate = Delegate(lambda url, body: call(api, "POST", url, body))
        self._runner = web.AppRunner(create_app(self.scraper, config, delegate))
        await self._runner.setup()
        host, port = self.args.metrics_api_address.rsplit(":", 1)
        context = tls_context(cert.cert, cert.key, config.client_ca)
        await web.TCPSite(self._runner, host, int(port), ssl_context=context).start()
        self._tasks += [asyncio.create_task(self.scraper.run()), asyncio.create_task(self._loop())]
        log.info("metrics API serving on https://%s", self.args.metrics_api_address)

    async def _patch_ca_bundle(self, api: ApiClient, ca: str) -> None:
        bundle = base64.b64encode(ca.encode()).decode()
        url = f"{APISERVICES}/{self.args.metrics_api_apiservice}"
        await call(
            api, "PATCH", url, {"spec": {"caBundle": bundle}}, "application/merge-patch+json"
        )

    async def close(self) -> None:
        """Stop everything started here."""
        for task in self._tasks:
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._api is not None:
            await self._api.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.args.scrape_interval)
            try:
                await self.activate_all()
            except Exception:  # retried next round
                log.exception("scale-to-zero round failed")

    async def activate_all(self) -> None:
        """Wake or idle every service with ``minReplicas: 0`` (see ``metricsapi.activation``)."""
        if self.scraper is None or self._api is None:
            return
        for ref, obj in list(self.scraper.objects.items()):
            auto = (obj.get("spec") or {}).get("autoscaling") or {}
            if not auto.get("enabled") or auto.get("metrics") == "keda":
                continue
            decision = decide(
                int(obj["spec"].get("replicas", 1)),
                int(auto.get("minReplicas", 1)),
                self.scraper.reading(*ref),
                idle_since=self.idle_since.get(ref),
                now=time.monotonic(),
                idle_seconds=float(auto.get("idleSecondsBeforeZero", 600)),
            )
            self._remember(ref, decision.idle_since)
            if decision.replicas is not None:
                await self._scale(ref, decision.replicas)

    def _remember(self, ref: Ref, since: float | None) -> None:
        if since is None:
            self.idle_since.pop(ref, None)
        else:
            self.idle_since[ref] = since

    async def _scale(self, ref: Ref, replicas: int) -> None:
        namespace, name = ref
        url = f"/apis/llmsvc.io/v1alpha1/namespaces/{namespace}/llmservices/{name}/scale"
        body = {"spec": {"replicas": replicas}}
        if self._api is None:
            return
        await call(self._api, "PATCH", url, body, "application/merge-patch+json")
        word = "woke from zero (requests waiting)" if replicas else "scaled to zero (idle)"
        log.info("%s/%s: %s", namespace, name, word)
        if self.scraper is not None:  # the next scrape round brings the new spec
            self.scraper.objects[ref] = {**self.scraper.objects[ref], "spec": {}}


def register(registry: kopf.OperatorRegistry, autoscaler: Autoscaler) -> None:
    """Start the autoscaler with the operator and stop it with it."""

    @kopf.on.startup(registry=registry)
    async def _start(**_: Any) -> None:
        await autoscaler.start()

    @kopf.on.cleanup(registry=registry)
    async def _stop(**_: Any) -> None:
        await autoscaler.close()
