"""Small helpers for e2e tests: run kubectl against the test cluster and wait for conditions.

The session fixture in e2e/conftest.py exports KUBECONFIG and puts the cached binaries (kubectl,
helm, ...) first on PATH, so these helpers and any subprocess a test starts use the same cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
CLUSTER_DIR = REPO / "e2e" / "cluster"
DEFAULT_TIMEOUT = 60.0
APPLY_SECONDS_PER_OBJECT = 0.5  # a loaded API server (1,000 objects, 2 cores) takes ~0.2 s each


class KubectlError(AssertionError):
    """kubectl exited non-zero; the message carries the command and its stderr."""


def kubectl(
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run `kubectl ARGS` (text mode); raise KubectlError with its stderr when check fails."""
    proc = subprocess.run(
        ["kubectl", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise KubectlError(
            f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.strip()}"
        )
    return proc


def kubectl_json(*args: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Run `kubectl ARGS -o json` and return the parsed object."""
    out: dict[str, Any] = json.loads(kubectl(*args, "-o", "json", timeout=timeout).stdout)
    return out


def events_of(namespace: str, name: str) -> list[dict[str, Any]]:
    """The Events recorded on object ``name`` of ``namespace``."""
    items: list[dict[str, Any]] = kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items


def created(events: list[dict[str, Any]]) -> set[str]:
    """Every ``Kind name`` the operator's ``Created`` Events list (one Event per pass)."""
    return {
        item
        for e in events
        if e.get("reason") == "Created"
        for item in str(e.get("message", "")).removeprefix("created ").split(" and ")[0].split(", ")
    }


def to_yaml(objects: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> str:
    """One or many manifests as a multi-document YAML string."""
    docs = [objects] if isinstance(objects, Mapping) else list(objects)
    return yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False)


def apply(
    objects: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    namespace: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply` manifests given as dicts (server-side validation, like a user would).

    The timeout grows with the number of objects: a thousand take minutes on a busy server."""
    docs = [objects] if isinstance(objects, Mapping) else list(objects)
    ns = ["-n", namespace] if namespace else []
    timeout = apply_timeout(len(docs))
    return kubectl("apply", *ns, "-f", "-", input=to_yaml(docs), check=check, timeout=timeout)


def apply_timeout(count: int) -> float:
    """Seconds `kubectl apply` of ``count`` objects may take: the default plus a share each."""
    return DEFAULT_TIMEOUT + APPLY_SECONDS_PER_OBJECT * count


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.25,
    what: str = "condition",
) -> T:
    """Poll `predicate` until it returns a truthy value and return it; fail after `timeout` s.

    Exceptions from the predicate count as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # reported below if it never succeeds
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval)


def pods(namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
    """Pods of a namespace, optionally filtered by a label selector."""
    sel = ["-l", selector] if selector else []
    items: list[dict[str, Any]] = kubectl_json("get", "pods", "-n", namespace, *sel)["items"]
    return items


def is_ready(obj: Mapping[str, Any]) -> bool:
    """True when the object's status has condition Ready=True (pods, nodes, LLMServices)."""
    conditions = obj.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def exists(kind: str, name: str, namespace: str) -> bool:
    """Whether `kind/name` exists in `namespace`."""
    proc = kubectl(
        "get", kind, name, "-n", namespace, "--ignore-not-found", "-o", "name", check=False
    )
    return bool(proc.stdout.strip())


def cluster_setting(name: str) -> str:
    """A variable of e2e/cluster/common.sh (e.g. LLMSVC_BIN, cluster_dir), as the scripts see it."""
    out = subprocess.run(
        ["bash", "-c", f'. "{CLUSTER_DIR}/common.sh" && printf %s "${name}"'],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def env_flag(name: str) -> bool:
    """An environment switch such as LLMSVC_KEEP=1 (1/true/yes, case-insensitive)."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def established(path: Path | str) -> bool:
    """Whether every CRD in file ``path`` is Established (False while its status is still empty)."""
    doc = kubectl_json("get", "-f", str(path))
    crds = doc["items"] if doc.get("kind") == "List" else [doc]
    return bool(crds) and all(_condition(crd, "Established") == "True" for crd in crds)


def _condition(obj: Mapping[str, Any], kind: str) -> str:
    """The status ("True"/"False"/"Unknown") of condition ``kind`` of ``obj``, or ''."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((str(c.get("status")) for c in conditions if c.get("type") == kind), "")


def wait_established(*paths: Path | str, timeout: float = 60) -> None:
    """Wait until the API server serves the CRDs of ``paths``. (``kubectl wait
    --for=condition=Established`` fails at once, instead of waiting, when it reads a CRD whose
    status has no conditions yet: seen on a loaded machine right after the apply.)"""
    for path in paths:
        wait_for(partial(established, path), timeout=timeout, what=f"{path} Established")


# What the operator reads: LLMServices, their children, their pods, cordoned nodes.
OPERATOR_RESOURCES = frozenset({
    "llmservices", "statefulsets", "deployments", "services", "serviceaccounts", "roles",
    "rolebindings", "horizontalpodautoscalers", "networkpolicies", "poddisruptionbudgets",
    "podgroups", "scaledobjects", "pods", "nodes",
})  # fmt: skip
READ_VERBS = ("GET", "LIST")


def reads_between(
    before: Mapping[tuple[str, str], float], after: Mapping[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    """GET and LIST requests on the operator's resources between two apiserver_requests()."""
    return {
        slot: after[slot] - before.get(slot, 0.0)
        for slot in after
        if slot[0] in READ_VERBS
        and slot[1] in OPERATOR_RESOURCES
        and after[slot] > before.get(slot, 0.0)
    }


def apiserver_requests() -> dict[tuple[str, str], float]:
    """kube-apiserver's own count of the requests it served, by (verb, resource), from its
    /metrics (``apiserver_request_total``); subresources and non-resource URLs are left out."""
    text = kubectl("get", "--raw", "/metrics").stdout
    counts: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        head, value = line.rsplit(" ", 1)
        labels = dict(
            part.split("=", 1) for part in head[len("apiserver_request_total{") : -1].split(",")
        )
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("resource") and not labels.get("subresource"):
            slot = (labels["verb"], labels["resource"])
            counts[slot] = counts.get(slot, 0.0) + float(value)
    return counts
