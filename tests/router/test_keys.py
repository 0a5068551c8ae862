"""API keys from a Secret referenced by the LLMService, rotated without restarting the router."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from llmsvc.api import InvalidSpecError
from llmsvc.cli import build_parser
from llmsvc.render import render
from llmsvc.router.main import validate
from tests.invalid_cases import setter
from tests.render_helpers import kinds, svc_with
from tests.router.conftest import RouterFactory
from tests.sim.conftest import Sim
from tests.sim.test_app import CHAT, post


def kubelet_write(mount: Path, text: str) -> None:
    """Update a Secret volume the way the kubelet does: a new timestamped directory, then an
    atomic swap of the ``..data`` symlink (``keys`` -> ``..data/keys`` never changes)."""
    version = mount / f"..{len(list(mount.iterdir()))}"
    version.mkdir()
    (version / "keys").write_text(text)
    (mount / "..data_tmp").symlink_to(version.name)
    os.replace(mount / "..data_tmp", mount / "..data")
    if not (mount / "keys").is_symlink():
        (mount / "keys").symlink_to("..data/keys")


async def status_with(url: str, key: str) -> int:
    return (await post(f"{url}/v1/chat/completions", CHAT, Authorization=f"Bearer {key}"))[0]


async def eventually(url: str, key: str, status: int) -> None:
    for _ in range(100):
        if await status_with(url, key) == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"key {key} never got {status}")


async def test_keys_rotate_without_a_restart(
    tmp_path: Path, two_sims: list[Sim], router_factory: RouterFactory
) -> None:
    kubelet_write(tmp_path, "# team\nsk-old\n")
    router = await router_factory(
        [two_sims[0].url], api_key_file=tmp_path / "keys", key_reload_seconds=0.1
    )
    assert await status_with(router.url, "sk-old") == 200
    assert await status_with(router.url, "sk-new") == 401
    kubelet_write(tmp_path, "sk-new\nsk-other\n")
    await eventually(router.url, "sk-new", 200)
    assert await status_with(router.url, "sk-old") == 401
    assert await status_with(router.url, "sk-other") == 200
    kubelet_write(tmp_path, "# rotation half done\n")  # no key: keep the last good set
    await asyncio.sleep(0.3)
    assert await status_with(router.url, "sk-new") == 200


async def test_a_missing_key_file_lets_nobody_in(
    tmp_path: Path, two_sims: list[Sim], router_factory: RouterFactory
) -> None:
    router = await router_factory([two_sims[0].url], api_key_file=tmp_path / "absent")
    assert await status_with(router.url, "") == 401


def test_the_secret_is_mounted_as_a_directory_and_passed_to_the_router() -> None:
    svc = svc_with(setter("spec.router.apiKeySecret", {"name": "llm-keys", "key": "keys.txt"}))
    pod = kinds(render(svc), "Deployment")[0]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["volumes"] == [
        {
            "name": "api-keys",
            "secret": {"secretName": "llm-keys", "items": [{"key": "keys.txt", "path": "keys"}]},
        }
    ]
    [mount] = container["volumeMounts"]
    assert "subPath" not in mount  # a subPath mount never sees the Secret change
    assert mount["readOnly"] is True
    args = container["args"]
    key_file = args[args.index("--api-key-file") + 1]
    assert key_file == f"{mount['mountPath']}/keys"
    validate(build_parser("router").parse_args(args))


def test_no_secret_no_volume() -> None:
    pod = kinds(render(svc_with()), "Deployment")[0]["spec"]["template"]["spec"]
    assert "volumes" not in pod
    assert "--api-key-file" not in pod["containers"][0]["args"]


@pytest.mark.parametrize(
    ("ref", "field"),
    [
        ({"name": "Bad_Name", "key": "k"}, "name"),
        ({"name": "ok", "key": "a/b"}, "key"),
        ({"name": "ok"}, "key"),
    ],
)
def test_a_bad_secret_reference_is_rejected(ref: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidSpecError, match=f"apiKeySecret.{field}"):
        svc_with(setter("spec.router.apiKeySecret", ref))
