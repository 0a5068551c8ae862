"""Mark the operator's own pod while it holds the leader Lease (``--mark-leader-pod``).

Only the leader serves the external metrics API, yet a Service selects every operator pod: with
two replicas the API server's aggregator would reach a standby half of the time and the HPA
would read errors. So the leader labels its own pod ``llmsvc.io/leader=true`` and the metrics
API Service selects that label too. Every process clears the label from its own pod when it
starts (a leader that lost the Lease restarts as a standby in the same pod) and when it lets the
Lease go. The pod is named by the downward API (``POD_NAME``, ``POD_NAMESPACE``).

A failed patch never stops the operator: it logs what is missing (the pod, or ``patch`` on pods
in its namespace) and the operator reconciles unmarked.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger("llmsvc.leader")
LABEL = "llmsvc.io/leader"
PATCH_TIMEOUT = 5.0


@dataclass(frozen=True)
class OwnPod:
    """The pod this process runs in."""

    namespace: str
    name: str

    @staticmethod
    def from_env() -> OwnPod | None:
        """The pod named by ``POD_NAMESPACE`` and ``POD_NAME``; ``None`` when either is unset."""
        namespace, name = os.environ.get("POD_NAMESPACE", ""), os.environ.get("POD_NAME", "")
        return OwnPod(namespace, name) if namespace and name else None


def label_patch(leading: bool) -> dict[str, object]:
    """The merge patch that sets (``leading``) or removes the leader label."""
    return {"metadata": {"labels": {LABEL: "true" if leading else None}}}


async def mark(api: client.ApiClient, pod: OwnPod, leading: bool) -> bool:
    """Label ``pod`` as the leader or not; False (and a warning saying why) when it failed."""
    try:
        await api.call_api(
            f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}",
            "PATCH",
            body=label_patch(leading),
            header_params={"Content-Type": "application/merge-patch+json"},
            auth_settings=["BearerToken"],
            response_types_map={200: "object"},
            _return_http_data_only=True,
            _request_timeout=PATCH_TIMEOUT,
        )
    except (ApiException, OSError, TimeoutError) as error:
        log.warning(
            "could not %s %s=true on pod %s/%s (%s): the metrics API Service selects the "
            "leader by it; check POD_NAME/POD_NAMESPACE and that the operator may patch pods "
            "in its namespace",
            "set" if leading else "remove", LABEL, pod.namespace, pod.name, _reason(error),
        )  # fmt: skip
        return False
    return True


def _reason(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    return type(error).__name__
