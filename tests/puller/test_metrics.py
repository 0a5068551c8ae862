"""``llmsvc pull --metrics-port``: progress gauges scraped from a real pull while it runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from tests.puller.conftest import run_pull
from tests.puller.servers import Server

from llmsvc.puller.metrics import GAUGES, PullProgress
from llmsvc.puller.progress import Progress
from llmsvc.router.server import free_port

MiB = 1 << 20


def scrape(port: int) -> dict[str, float]:
    """name -> value of every llmsvc_pull_* sample; {} while nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert all(not s.labels for s in samples if s.name.startswith("llmsvc_pull_")), samples
    return {s.name: s.value for s in samples if s.name.startswith("llmsvc_pull_")}


def test_collector_reads_the_live_progress() -> None:
    collector = PullProgress()
    assert collector.values() == (0, 0, 0, 0)  # listing files, waiting for the lock
    progress = Progress(total=100, files=2)
    collector.track(progress)
    progress.add(40)
    progress.file_finished()
    assert collector.values() == (100, 40, 2, 1)
    assert [f.name for f in collector.collect()] == [name for name, _ in GAUGES]


def test_progress_is_served_while_the_pull_runs(http_server: Server, tmp_path: Path) -> None:
    http_server.state.files["/m/w.bin"] = bytes(range(256)) * (4 * MiB // 256)
    http_server.state.rate = 2 * MiB  # about two seconds
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HF_"))}
    env["LLMSVC_PULL_METRICS_PORT"] = str(port)  # as the init container sets it
    uri = f"{http_server.url}/m/w.bin"
    cmd = [sys.executable, "-m", "llmsvc.cli", "pull", uri, str(tmp_path)]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        seen: list[dict[str, float]] = []
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if (values := scrape(port)) and values["llmsvc_pull_downloaded_bytes"] > 0:
                seen.append(values)
            time.sleep(0.2)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr.decode()
    assert seen, "never scraped a running pull"
    middle = seen[0]
    assert middle["llmsvc_pull_expected_bytes"] == 4 * MiB
    assert 0 < middle["llmsvc_pull_downloaded_bytes"] < 4 * MiB
    assert middle["llmsvc_pull_expected_files"] == 1
    assert scrape(port) == {}  # the endpoint ends with the pull


def test_a_port_in_use_costs_only_the_metrics(http_server: Server, tmp_path: Path) -> None:
    http_server.state.files["/m/w.bin"] = b"w" * 1000
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run_pull(f"{http_server.url}/m/w.bin", str(tmp_path), "--metrics-port", str(port))
    assert res.returncode == 0, res.stderr
    assert f"no progress metrics: cannot listen on port {port}" in res.stderr
