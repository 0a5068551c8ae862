"""Fixtures for e2e tests: the local control plane, the CRDs from crds/, a namespace per test.

Fixtures: `cluster` (session; CRDs from crds/ installed), `bare_cluster` (session; no CRDs, for
tests of the control plane itself), `namespace` (fresh per test), `real_node` (the kubelet node
with our images; fails with the reason when it is not there, e.g. `LLMSVC_REAL_NODES=0`).
Helpers live in e2e/helpers.py and, for the real node, e2e/realnode.py.

Switches (environment):
  LLMSVC_USE_KUBECONFIG=1  run against the cluster in $KUBECONFIG instead of starting the local one
  LLMSVC_KEEP=1            keep the namespace of a failed test for inspection
  LLMSVC_CLUSTER_DOWN=1    stop the local cluster after the session (default: keep it for reuse)
  LLMSVC_CRDS=DIR          install the CRDs from DIR instead of crds/ (to try a CRD change)
  LLMSVC_FRESH=1           recreate the local cluster instead of reusing it (implied when CI=true)
Every test under e2e/ is marked `e2e` (select or deselect with `-m e2e` / `-m "not e2e"`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e import realnode
from e2e.helpers import CLUSTER_DIR, REPO, cluster_setting, env_flag, kubectl, wait_established
from e2e.operator_process import OperatorProcess

CRD_DIR = Path(os.environ.get("LLMSVC_CRDS", REPO / "crds"))
FAILED = pytest.StashKey[bool]()


@dataclass(frozen=True)
class Cluster:
    """The cluster under test: its kubeconfig and whether this session started it."""

    kubeconfig: Path
    started_here: bool


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected from e2e/ as `e2e`."""
    e2e_dir = Path(__file__).resolve().parent
    for item in items:
        if e2e_dir in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember on the item whether any phase failed (the namespace fixture reads it)."""
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


def _run_script(name: str, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run e2e/cluster/NAME; on failure fail the session with the script's own error output."""
    script = CLUSTER_DIR / name
    try:
        proc = subprocess.run(
            [str(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script} did not finish within {timeout:.0f} s", pytrace=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-60:])
        pytest.fail(f"{script} failed (exit {proc.returncode}):\n{tail}", pytrace=False)
    return proc.stdout


def _start_local_cluster() -> Path:
    """Build what is missing (cached after the first run) and start or reuse the local cluster."""
    _run_script("build.sh", timeout=3600)
    # CI starts from a fresh cluster: a reused one may hold a demo's or a killed run's pods.
    fresh = {"LLMSVC_FRESH": "1"} if env_flag("CI") else {}
    # Cold, up.sh also installs packages and builds the real node's images (about 6 min).
    lines = _run_script("up.sh", timeout=1200, env=fresh).strip().splitlines()
    if not lines:
        pytest.fail("e2e/cluster/up.sh printed no kubeconfig path", pytrace=False)
    return Path(lines[-1])


def _install_crds(files: list[Path]) -> None:
    """Apply CRD files and wait until the API server serves them."""
    for path in files:
        proc = kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path), check=False)
        if proc.returncode != 0:
            pytest.fail(f"the API server rejected {path}:\n{proc.stderr}", pytrace=False)
    wait_established(*files)


def _export_environment() -> None:
    """KUBECONFIG and PATH for the whole test process, set when this conftest is loaded.

    Done before any test module is imported because some clients (kubernetes_asyncio) read
    KUBECONFIG once at import time. The local cluster's kubeconfig path is fixed in common.sh.
    """
    bin_dir = cluster_setting("LLMSVC_BIN")
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    if not env_flag("LLMSVC_USE_KUBECONFIG"):
        os.environ["KUBECONFIG"] = cluster_setting("LLMSVC_KUBECONFIG")


_export_environment()


@pytest.fixture(scope="session")
def bare_cluster() -> Iterator[Cluster]:
    """The cluster under test without our CRDs: KUBECONFIG exported, cached binaries on PATH."""
    path = os.environ.get("KUBECONFIG", "")
    if env_flag("LLMSVC_USE_KUBECONFIG"):
        if not path:
            pytest.fail("LLMSVC_USE_KUBECONFIG=1 needs KUBECONFIG set", pytrace=False)
        found = Cluster(Path(path), started_here=False)
    else:
        found = Cluster(_start_local_cluster(), started_here=True)
        if found.kubeconfig != Path(path):
            pytest.fail(f"up.sh wrote {found.kubeconfig}, expected {path}", pytrace=False)
    version = kubectl("version", check=False)
    if version.returncode != 0:
        pytest.fail(
            f"cannot reach the cluster in {found.kubeconfig}: {version.stderr}", pytrace=False
        )
    yield found
    if found.started_here and env_flag("LLMSVC_CLUSTER_DOWN"):
        _run_script("down.sh", timeout=120)


@pytest.fixture(scope="session")
def cluster(bare_cluster: Cluster) -> Cluster:
    """The cluster under test with every crds/*.yaml applied and Established.

    Fails (never skips) with the API server's error when a CRD is missing or rejected.
    """
    files = sorted(CRD_DIR.glob("*.yaml"))
    if not files:
        pytest.fail(f"no CRDs in {CRD_DIR} (make generate)", pytrace=False)
    _install_crds(files)
    return bare_cluster


def _namespace_name(test_name: str) -> str:
    """A fresh DNS-1123 namespace name derived from the test name."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"e2e-{slug}-{secrets.token_hex(3)}"


def _fresh_namespace(request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace named after the requesting test or module; deleted afterwards unless
    LLMSVC_KEEP=1 and a test using it failed."""
    name = _namespace_name(request.node.name)
    metadata = {"name": name, "labels": {"llmsvc.io/e2e": "true"}}
    kubectl(
        "create",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}),
    )
    yield name
    if request.scope == "function":
        failed = request.node.stash.get(FAILED, False)
    else:  # shared namespace: keep it when any test failed so far
        failed = request.session.testsfailed > 0
    if env_flag("LLMSVC_KEEP") and failed:
        print(f"LLMSVC_KEEP=1: kept namespace {name} (KUBECONFIG={os.environ.get('KUBECONFIG')})")
        return
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(bare_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test; deleted afterwards unless LLMSVC_KEEP=1 and the test failed."""
    yield from _fresh_namespace(request)


@pytest.fixture(scope="module")
def module_namespace(bare_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """One namespace shared by the tests of a module (for tests that leave nothing behind)."""
    yield from _fresh_namespace(request)


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> str:
    """The real kubelet node's name, once it is Ready with the project's images.

    Never skips: a cluster without it (LLMSVC_REAL_NODES=0, or a foreign cluster) fails the
    test with the reason and the kubelet's log to look at.
    """
    problem = realnode.node_problem()
    deadline = time.monotonic() + 60  # a node that up.sh just started may still be settling
    while problem and cluster.started_here and time.monotonic() < deadline:
        time.sleep(2)
        problem = realnode.node_problem()
    if problem:
        log = Path(cluster_setting("NODE_DIR")) / "logs" / "kubelet.log"
        pytest.fail(
            f"the real node is not usable: {problem}. It is started by e2e/cluster/up.sh when "
            f"LLMSVC_REAL_NODES=1 (the default for the default cluster); kubelet log: {log}",
            pytrace=False,
        )
    return realnode.node_name()


@pytest.fixture
def real_namespace(real_node: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for a test on the real node, once earlier tests' pods have left it."""
    realnode.wait_idle()
    yield from _fresh_namespace(request)


@pytest.fixture(scope="module")
def real_operator(real_node: str) -> Iterator[OperatorProcess]:
    """An operator process (on this machine) whose pullers and routers use the project image
    built by e2e/cluster/node/images.sh."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMSVC_IMAGE", realnode.OPERATOR_IMAGE)
        process = OperatorProcess()
        process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tiny_model(
    real_node: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Counter[str]]]:
    """(URI of a tiny model file served on the pod bridge, GET counts per path)."""
    root = tmp_path_factory.mktemp("models")
    realnode.write_model(root / "tiny")
    with realnode.model_server(root) as (url, counts):
        yield f"{url}/tiny/model.safetensors", counts


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[OperatorProcess]:
    """One ``llmsvc operator`` process per test module (tests may kill and restart it)."""
    process = OperatorProcess()
    process.start()
    yield process
    process.stop()
