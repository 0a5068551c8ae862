"""The router pod on the real node: reached through its ClusterIP Service, it serves the official
``openai`` client (streaming included) and follows engine pods as they go and come back.

The router Deployment gets the real node's placement with ``kubectl patch`` (its own field
manager, so the operator's server-side apply leaves it alone): the LLMService API places only
the ranks.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from collections.abc import Iterator

import openai
import pytest

from e2e import realnode
from e2e.helpers import apply, kubectl, kubectl_json, wait_for
from e2e.operator_process import OperatorProcess

READY_TIMEOUT = 240.0


@pytest.fixture
def port_forward(real_namespace: str) -> Iterator[list[subprocess.Popen[str]]]:
    """``kubectl port-forward`` processes started by the test; stopped afterwards."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)


def forward(namespace: str, target: str, procs: list[subprocess.Popen[str]]) -> str:
    """``kubectl port-forward TARGET :8000`` on 127.0.0.1; the local base URL."""
    proc = subprocess.Popen(
        ["kubectl", "port-forward", "-n", namespace, "--address", "127.0.0.1", target, ":8000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"127\.0\.0\.1:(\d+)", line)
    assert match, f"kubectl port-forward said: {line}{proc.stdout.read() if proc.poll() else ''}"
    return f"http://127.0.0.1:{match.group(1)}"


def chat(client: openai.OpenAI, model: str) -> str:
    """One chat completion's text."""
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello!"}], max_tokens=8
    )
    return reply.choices[0].message.content or ""


def test_router_pod_serves_the_openai_client_through_its_service(
    real_operator: OperatorProcess,
    real_namespace: str,
    tiny_model: tuple[str, Counter[str]],
    port_forward: list[subprocess.Popen[str]],
) -> None:
    ns = real_namespace
    apply(realnode.llmservice("chat", tiny_model[0]), ns)
    realnode.place_router(ns, "chat")
    realnode.wait_condition(ns, "chat", "Ready", READY_TIMEOUT)
    wait_for(
        lambda: realnode.router_pod(ns, "chat"), timeout=READY_TIMEOUT, what="the router pod Ready"
    )

    client = openai.OpenAI(base_url=forward(ns, "svc/chat", port_forward) + "/v1", api_key="x")
    assert chat(client, "chat")
    stream = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=6, stream=True
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) >= 2, pieces

    # A pod on the node reaches the Service by its cluster DNS name and ClusterIP.
    url = f"http://chat.{ns}.svc.cluster.local:8000/v1/models"
    overrides = {"spec": {**realnode.placement(), "restartPolicy": "Never"}}
    get = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=10).read().decode())"
    image, spec = f"--image={realnode.ENGINE_IMAGE}", f"--overrides={json.dumps(overrides)}"
    kubectl("run", "probe", "-n", ns, image, "--restart=Never", spec, "--command", "--",
            "python3", "-c", get)  # fmt: skip
    wait_for(
        lambda: realnode.pod(ns, "probe")["status"].get("phase") in ("Succeeded", "Failed"),
        timeout=120,
        what="the probe pod to finish",
    )
    out = kubectl("logs", "probe", "-n", ns).stdout
    assert realnode.pod(ns, "probe")["status"]["phase"] == "Succeeded", out
    assert json.loads(out)["data"][0]["id"] == "chat"

    # The engine pod goes (deleted; its group is recreated) and comes back with a new address:
    # the router follows its EndpointSlices.
    old_ip = realnode.pod(ns, "chat-0-0")["status"]["podIP"]
    kubectl("delete", "pod", "chat-0-0", "-n", ns, "--wait=false")

    def back() -> bool:
        pod = realnode.pod(ns, "chat-0-0")
        fresh = pod["status"].get("podIP") not in (None, old_ip)
        return fresh and realnode.condition(pod, "Ready").get("status") == "True"

    wait_for(back, timeout=READY_TIMEOUT, interval=1, what="a new engine pod Ready")
    assert wait_for(lambda: chat(client, "chat"), timeout=60, what="the router to use it")
    slices = kubectl_json("get", "endpointslices", "-n", ns)["items"]
    addresses = {a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]}
    assert old_ip not in addresses
