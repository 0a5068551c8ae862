"""The puller init container on the real node: it really downloads into the pod's cache volume.

Sources are servers on this machine, bound to the pod bridge's gateway address: an HTTP file
server and moto (S3). A shared claim (a hostPath PersistentVolume on the node) lets two ranks of a
group use one cache: only one downloads. A URI that does not exist leaves the pod in Init:Error.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from e2e import realnode
from e2e.helpers import apply, kubectl, wait_for
from e2e.operator_process import OperatorProcess

READY_TIMEOUT = 240.0
PULLER_UID = 10001  # the puller runs as this user; a hostPath volume gets no fsGroup


@pytest.fixture
def moto_s3(real_node: str) -> Iterator[str]:
    """moto's S3 server on the pod bridge's gateway; yields its URL."""
    server = ThreadedMotoServer(ip_address=realnode.gateway(), port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def shared_claim(namespace: str, name: str, path: Path) -> list[realnode.Manifest]:
    """A ReadWriteMany claim bound to a hostPath volume at ``path`` on the node."""
    path.mkdir(mode=0o755)
    os.chown(path, PULLER_UID, PULLER_UID)
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{namespace}-{name}"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Delete",
            "hostPath": {"path": str(path), "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": name},
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "volumeName": f"{namespace}-{name}",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    return [volume, claim]


def pull_log(namespace: str, pod: str) -> str:
    """What the pod's puller printed."""
    return kubectl("logs", "-n", namespace, pod, "-c", "pull").stdout


def failed_pull_log(namespace: str, pod: str) -> str:
    """What the pod's previous puller attempt printed ('' when there was none)."""
    args = ("logs", "--previous", "-n", namespace, pod, "-c", "pull")
    return kubectl(*args, check=False).stdout


def test_two_ranks_on_one_shared_cache_download_once(
    real_operator: OperatorProcess,
    real_namespace: str,
    tiny_model: tuple[str, Counter[str]],
    tmp_path: Path,
) -> None:
    ns, (uri, counts) = real_namespace, tiny_model
    cache = tmp_path / "cache"
    apply(shared_claim(ns, "weights", cache), ns)
    apply(realnode.llmservice("shared", uri, nodes=2, cache={"existingClaim": "weights"}), ns)
    realnode.wait_condition(ns, "shared", "Ready", READY_TIMEOUT)
    files = [p for p in cache.rglob("model.safetensors") if p.is_file()]
    assert len(files) == 1
    assert files[0].stat().st_size == 4096
    logs = [pull_log(ns, "shared-0-0"), pull_log(ns, "shared-0-1")]
    fetched = [log for log in logs if "fetched" in log]
    assert len(fetched) == 1, logs  # one rank downloaded ...
    (other,) = [log for log in logs if log not in fetched]
    assert "another pull completed" in other or "cache hit" in other, other  # ... one reused
    done = f'llmservice="shared",namespace="{ns}",state="done"'
    wait_for(
        lambda: real_operator.metric("llmsvc_operator_llmservice_pulls", done) == 2,
        timeout=30,
        what="llmsvc_operator_llmservice_pulls{state=done} == 2",
    )
    assert counts  # the model server was asked


def test_puller_downloads_from_s3_into_the_pod(
    real_operator: OperatorProcess, real_namespace: str, moto_s3: str
) -> None:
    ns = real_namespace
    keys = {"AWS_ACCESS_KEY_ID": "testing-AKID", "AWS_SECRET_ACCESS_KEY": "testing-secret"}
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        region_name="us-east-1",
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket="models")
    s3.put_object(Bucket="models", Key="tiny/model.safetensors", Body=b"\1" * 8192)
    s3.put_object(Bucket="models", Key="tiny/config.json", Body=json.dumps({}).encode())
    env = keys | {"AWS_ENDPOINT_URL": moto_s3, "AWS_REGION": "us-east-1"}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3"}, "stringData": env}
    service = realnode.llmservice("s3", "s3://models/tiny")
    service["spec"]["model"]["credentialsSecret"] = "s3"
    apply([secret, service], ns)
    realnode.wait_condition(ns, "s3", "Ready", READY_TIMEOUT)
    log = pull_log(ns, "s3-0-0")
    assert "fetched" in log, log
    assert "s3://models/tiny" in log, log
    assert "testing-secret" not in log


def test_bad_uri_leaves_the_pod_in_init_error(
    real_operator: OperatorProcess,
    real_namespace: str,
    tiny_model: tuple[str, Counter[str]],
) -> None:
    ns = real_namespace
    missing = tiny_model[0].replace("/tiny/", "/missing/")
    apply(realnode.llmservice("bad", missing), ns)

    def init_failed() -> realnode.Manifest | None:
        status = realnode.container_status(realnode.pod(ns, "bad-0-0"), "pull", init=True)
        terminated = status.get("state", {}).get("terminated") or status.get("lastState", {}).get(
            "terminated"
        )
        return terminated if terminated and terminated.get("exitCode") else None

    wait_for(init_failed, timeout=READY_TIMEOUT, interval=1, what="the puller to fail")

    def shown_failed() -> bool:  # what `kubectl get pods` shows between the puller's retries
        table = kubectl("get", "pod", "bad-0-0", "-n", ns).stdout
        return "Init:Error" in table or "Init:CrashLoopBackOff" in table

    wait_for(shown_failed, timeout=60, interval=0.5, what="bad-0-0 shown as Init:Error")

    def failed_attempt_log() -> str:  # the puller may be between attempts: a fresh one is empty
        attempts = [pull_log(ns, "bad-0-0"), failed_pull_log(ns, "bad-0-0")]
        return next((log for log in attempts if "exit 3" in log), "")

    log = wait_for(failed_attempt_log, timeout=30, interval=0.5, what="the failed puller's log")
    assert "does not exist (HTTP 404)" in log, log
    degraded = realnode.wait_condition(ns, "bad", "Degraded", 120, reason="PullFailed")
    assert "missing/model.safetensors" in degraded["message"], degraded
    assert not realnode.is_ready_service(ns, "bad")
    # The operator's gauge counts the rank as failed, from the real kubelet's init container status.
    failed = f'llmservice="bad",namespace="{ns}",state="failed"'
    wait_for(
        lambda: real_operator.metric("llmsvc_operator_llmservice_pulls", failed) == 1,
        timeout=30,
        what="llmsvc_operator_llmservice_pulls{state=failed} == 1",
    )
