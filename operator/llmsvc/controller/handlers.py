"""kopf wiring: start-up, log-in and clean-up of the operator, and its kopf settings.

No resource handler is registered. kopf's changing handlers (create/update/resume) and timers
would put a finalizer on every LLMService and write bookkeeping annotations; the operator needs
neither, because its reconcile is level-based. Its own watch caches
(:class:`llmsvc.controller.cache.Cache`, started by :meth:`Runtime.attach`) see every event of an
LLMService, of its children and of its pods (label-selected on the server, not every pod of the
cluster), poke :class:`llmsvc.controller.runtime.Runtime`, and answer the reconciles' reads.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from llmsvc.api import GROUP
from llmsvc.controller.kube import api_client
from llmsvc.controller.runtime import Runtime


def configure(settings: kopf.OperatorSettings, level: int) -> None:
    """kopf settings: our own annotation prefix, and timeouts chosen on purpose."""
    # No handler here needs them, but should kopf ever store state, it is under our prefix.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Ask the API server to end every watch after 5 minutes: a connection that died silently
    # (a load balancer dropping idle TCP) is then replaced within minutes, not never.
    settings.watching.server_timeout = 300
    # The client gives up a little after the server should have ended the watch.
    settings.watching.client_timeout = 330
    # Connecting to a healthy API server takes milliseconds; 10 s means it is unreachable.
    settings.watching.connect_timeout = 10
    # kopf's own calls (events) are small; 30 s instead of 5 min keeps a stuck call short.
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    # One operator replica; no peering CRD to install.
    settings.peering.standalone = True
    # The resources are known and the namespaces given: no cluster-wide listing of CRDs and
    # namespaces at start-up, so the operator needs no permission for it.
    settings.scanning.disabled = True
    # Log records are not Events; the operator posts its own Events with CamelCase reasons.
    settings.posting.level = logging.ERROR
    logging.getLogger("kopf").setLevel(level)


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    """Register every handler on ``registry``."""

    @kopf.on.startup(registry=registry)
    async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, logging.getLogger().level)
        runtime.attach(await api_client())

    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the service account; elsewhere: $KUBECONFIG (or ~/.kube/config).
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry)
    async def _cleanup(**_: Any) -> None:
        await runtime.close()
