"""Run ``llmsvc operator`` as a real process against the test cluster, and read its metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from e2e.helpers import wait_for
from llmsvc.router.server import free_port

RESYNC_SECONDS = 2.0


def answers(proc: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    """Whether ``url`` of running process ``proc`` answers 200; raises with its log if it exited."""
    if proc.poll() is not None:
        raise AssertionError(f"{proc.args!r} exited: {log.read_text()[-3000:]}")
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def terminate(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """Stop ``proc`` with SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int, field: str = "VmHWM") -> float:
    """Peak (``VmHWM``) or current (``VmRSS``) resident memory of ``pid``, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Measured:
    """A controller process (``proc``) whose CPU time and memory the benchmarks read."""

    proc: subprocess.Popen[bytes] | None = None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process has used so far."""
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def memory_mib(self, field: str = "VmHWM") -> float:
        """Peak (``VmHWM``) or current (``VmRSS``) resident memory."""
        assert self.proc is not None
        return memory_mib(self.proc.pid, field)


class OperatorProcess(Measured):
    """One operator process: start it, SIGKILL it, read its counters."""

    def __init__(
        self,
        resync: float = RESYNC_SECONDS,
        namespaces: tuple[str, ...] = (),
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.resync = resync
        self.namespaces = namespaces
        self.extra_args = extra_args
        self.env = env or {}
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="llmsvc-operator-", suffix=".log")[1])

    def start(self) -> None:
        """Start the operator and wait until its liveness endpoint answers."""
        command = [
            sys.executable, "-m", "llmsvc.cli", "operator",
            "--resync-seconds", str(self.resync),
            "--restart-backoff-seconds", "1",
            "--health-address", f"127.0.0.1:{self.health_port}",
            "--metrics-address", f"127.0.0.1:{self.metrics_port}",
            *(f"--namespace={ns}" for ns in self.namespaces),
            *self.extra_args,
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ) | self.env
            )
        wait_for(self._healthy, timeout=30, what=f"operator liveness (log: {self.log})")

    def _healthy(self) -> bool:
        assert self.proc is not None
        return answers(self.proc, f"http://127.0.0.1:{self.health_port}/healthz", self.log)

    def kill(self) -> None:
        """SIGKILL, as a crashed or evicted operator pod would die."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), falling back to SIGKILL."""
        if self.proc is not None:
            terminate(self.proc)

    def metric(self, name: str, contains: str = "") -> float:
        """The sum of the samples of metric ``name`` whose labels contain ``contains``."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head = line.split(" ")[0]
                labelled = head == name or head.startswith(name + "{")
                if labelled and contains in head:
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def writes(self, namespace: str = "") -> float:
        """API write requests made by this process so far (into ``namespace``, if given)."""
        contains = f'namespace="{namespace}"' if namespace else ""
        return self.metric("llmsvc_operator_api_writes_total", contains)

    def settle(self, seconds: float) -> None:
        """Sleep ``seconds`` (time for several resyncs)."""
        time.sleep(seconds)
