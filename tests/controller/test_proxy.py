"""The operator's API client reads the proxy variables once at start-up, and still honours them.

kubernetes-asyncio's session trusts the environment on every request (``~/.netrc`` in one
thread, the proxy variables in another): the operator turns that off and names the proxy itself.
A local aiohttp server plays the proxy; the API server's host does not resolve, so a request that
bypassed the proxy would fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.config import kube_config

from llmsvc.controller.kube import Kube, api_client, env_proxy

API = "http://api.invalid:6443"
KUBECONFIG = f"""
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{API}"}}}}]
users: [{{name: u, user: {{token: t0ken}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
"""


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))  # $KUBECONFIG
    monkeypatch.setattr(client.Configuration, "_default", None)  # restored after the test
    for scheme in ("no", "https", "http", "all"):
        monkeypatch.delenv(f"{scheme}_proxy", raising=False)
        monkeypatch.delenv(f"{scheme.upper()}_PROXY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return path


async def test_requests_go_through_the_proxy_the_environment_names(
    kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.url} {request.headers.get('Authorization')}")
        return web.json_response({"kind": "Pod", "metadata": {"name": "p"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{runner.addresses[0][1]}")
    api = await api_client()
    try:
        assert api.rest_client.pool_manager.trust_env is False  # no per-request lookups
        assert await Kube(api).get("Pod", "ml", "p") == {"kind": "Pod", "metadata": {"name": "p"}}
    finally:
        await api.close()
        await runner.cleanup()
    assert seen == [f"GET {API}/api/v1/namespaces/ml/pods/p Bearer t0ken"]


@pytest.mark.parametrize(
    ("env", "proxy"),
    [
        ({"https_proxy": "http://proxy:3128"}, "http://proxy:3128"),
        ({"https_proxy": "http://proxy:3128", "no_proxy": "api.invalid"}, None),
        ({"https_proxy": "http://proxy:3128", "no_proxy": ".invalid"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "*"}, None),
        ({"https_proxy": "http://u:p%40ss@proxy:3128"}, "http://u:p%40ss@proxy:3128"),
        ({"https_proxy": "https://proxy:3128"}, None),  # aiohttp ignores TLS proxies (warns)
        ({"http_proxy": "http://proxy:3128"}, None),  # names no proxy for https
        ({}, None),
    ],
)
def test_env_proxy(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                   proxy: str | None) -> None:  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert env_proxy("https://api.invalid:6443") == proxy


def test_env_proxy_takes_the_proxys_netrc_credentials(
    kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine proxy login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    assert env_proxy("https://api.invalid:6443") == "http://alice:s3cret@proxy:3128"
