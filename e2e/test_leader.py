"""Leader election on the real API server: two operator processes, one Lease, failover times.

Both processes run cluster-wide with ``--leader-elect`` (client-go's default timing: a 15 s
Lease, renewed every 2 s). Only the holder reconciles; the standby serves /healthz and makes no
API writes. The measured failover times are printed (``pytest -s``) and documented in the
chart README ("High availability").
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from tests.plan.test_gitops_statuses import CASES

from e2e.helpers import apply, kubectl, kubectl_json, wait_for
from e2e.operator_process import OperatorProcess

LEASE = "e2e-leader"
LEASE_SECONDS = 15.0
RETRY_SECONDS = 2.0


def holder(namespace: str) -> str:
    proc = kubectl("get", "lease", LEASE, "-n", namespace, "-o", "json", check=False)
    if proc.returncode != 0:
        return ""
    lease = kubectl_json("get", "lease", LEASE, "-n", namespace)
    return str(lease["spec"].get("holderIdentity") or "")


@pytest.fixture
def candidates(cluster: object, namespace: str) -> Iterator[dict[str, OperatorProcess]]:
    args = ("--leader-elect", f"--leader-election-namespace={namespace}",
            f"--leader-election-name={LEASE}")  # fmt: skip
    procs = {n: OperatorProcess(extra_args=args, env={"POD_NAME": n}) for n in ("a", "b")}
    try:
        yield procs
    finally:
        for proc in procs.values():
            proc.kill()


def _takeover(namespace: str, previous: str) -> tuple[str, float]:
    started = time.monotonic()
    new = wait_for(
        lambda: (h := holder(namespace)) not in ("", previous) and h,
        timeout=LEASE_SECONDS * 3,
        what="the standby to take the Lease over",
    )
    return str(new), time.monotonic() - started


def test_one_leader_reconciles_and_the_standby_takes_over(
    namespace: str, candidates: dict[str, OperatorProcess]
) -> None:
    for proc in candidates.values():
        proc.start()  # both answer /healthz: the standby too
    leader = str(wait_for(lambda: holder(namespace), timeout=30, what="a leader"))
    standby = "b" if leader == "a" else "a"
    manifest = CASES["fresh"][0]()
    manifest["metadata"] = {"name": "elected"}
    manifest.pop("status")
    apply(manifest, namespace)
    wait_for(
        lambda: (
            kubectl_json("get", "llmservice", "elected", "-n", namespace)["status"].get(
                "observedGeneration"
            )
            == 1
        ),
        timeout=60,
        what="the leader to reconcile",
    )
    assert candidates[standby].metric("llmsvc_operator_api_writes_total") == 0

    candidates[leader].kill()  # a crash: the Lease must expire first
    new, crash_seconds = _takeover(namespace, leader)
    assert new == standby
    assert crash_seconds <= LEASE_SECONDS + 3 * RETRY_SECONDS

    candidates[leader].start()  # back as the standby
    candidates[new].stop()  # a clean shutdown releases the Lease
    again, clean_seconds = _takeover(namespace, new)
    assert again == leader
    assert clean_seconds <= 3 * RETRY_SECONDS + 2
    print(f"\nfailover after SIGKILL: {crash_seconds:.1f} s; after SIGTERM: {clean_seconds:.1f} s")
