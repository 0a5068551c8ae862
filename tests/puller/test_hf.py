"""hf:// pulls through huggingface_hub against a fake hub (HF_ENDPOINT) on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from tests.puller.conftest import listing, run_pull, synthetic_model
from tests.puller.servers import Repo, Server

from llmsvc.puller.sources.hf import select_files

WANTED = {
    "config.json",
    "tokenizer.json",
    "model.safetensors.index.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
}


def test_pulls_what_vllm_loads_verified_against_hub_digests(
    hub: tuple[Server, Server], hub_repo: Repo, tmp_path: Path
) -> None:
    hub_srv, cdn = hub
    res = run_pull("hf://org/model", str(tmp_path), env={"HF_ENDPOINT": hub_srv.url})
    assert res.returncode == 0, res.stderr
    model = tmp_path / "hf/org/model/main"
    assert res.stdout.strip() == str(model)
    assert listing(model) == {n: hub_repo.files[n] for n in WANTED}
    marker = json.loads((model / ".llmsvc-complete.json").read_text())
    assert marker["resolved"] == hub_repo.commit
    algos = {f["path"]: f["checksum"]["algo"] for f in marker["files"]}
    assert algos["model-00001-of-00002.safetensors"] == "sha256"
    assert algos["config.json"] == "git-sha1"
    # pinned to the commit, LFS bytes came from the CDN origin without the token
    assert all(hub_repo.commit in r.path for r in hub_srv.state.gets("/org/model/resolve/"))
    assert len(cdn.state.gets("/lfs-cdn/")) >= 2


def test_token_is_sent_to_the_hub_but_not_to_the_cdn(
    hub: tuple[Server, Server], tmp_path: Path
) -> None:
    hub_srv, cdn = hub
    env = {"HF_ENDPOINT": hub_srv.url, "HF_TOKEN": "hf_public_repo_token_0000"}
    res = run_pull("hf://org/model", str(tmp_path), env=env)
    assert res.returncode == 0, res.stderr
    assert all(r.auth == "Bearer hf_public_repo_token_0000" for r in hub_srv.state.requests)
    assert all(r.auth is None for r in cdn.state.requests)


def test_revision_tag_gets_its_own_cache_dir(hub: tuple[Server, Server], tmp_path: Path) -> None:
    res = run_pull(
        "hf://org/model", str(tmp_path), "--revision", "v1.0", env={"HF_ENDPOINT": hub[0].url}
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(tmp_path / "hf/org/model/v1.0")


def test_unknown_revision_exits_3(hub: tuple[Server, Server], tmp_path: Path) -> None:
    res = run_pull(
        "hf://org/model", str(tmp_path), "--revision", "nope", env={"HF_ENDPOINT": hub[0].url}
    )
    assert res.returncode == 3
    assert "no revision 'nope'" in res.stderr


def test_private_repo_needs_the_token(hub: tuple[Server, Server], tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": hub[0].url}
    anon = run_pull("hf://org/secret", str(tmp_path), env=env)
    assert anon.returncode == 3
    assert "set HF_TOKEN" in anon.stderr
    ok = run_pull("hf://org/secret", str(tmp_path), env=env | {"HF_TOKEN": "hf_secret_token_abcd"})
    assert ok.returncode == 0, ok.stderr
    assert "hf_secret_token_abcd" not in ok.stderr + anon.stderr


def test_gated_repo_is_access_denied_naming_the_token(
    hub: tuple[Server, Server], tmp_path: Path
) -> None:
    env = {"HF_ENDPOINT": hub[0].url, "HF_TOKEN": "hf_not_accepted_terms_9999"}
    res = run_pull("hf://org/gated", str(tmp_path), env=env)
    assert res.returncode == 4
    assert "HF_TOKEN (ending ...9999)" in res.stderr


def test_bin_weights_are_the_fallback() -> None:
    names = ["config.json", "pytorch_model.bin", "tokenizer.model", "original/x.pth", "README.md"]
    assert select_files(names, {}) == ["config.json", "pytorch_model.bin", "tokenizer.model"]


def test_safetensors_index_limits_the_shards() -> None:
    names = [*synthetic_model(2, 10), "consolidated.safetensors", "pytorch_model.bin.index.json"]
    shards = {
        "model.safetensors.index.json": {
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        }
    }
    assert set(select_files(names, shards)) == WANTED


def test_include_adds_globs() -> None:
    assert select_files(["original/params.json", "a.safetensors"], {}, ["original/*"]) == [
        "a.safetensors",
        "original/params.json",
    ]


@given(
    st.lists(
        st.from_regex(r"[a-z]{1,6}(/[a-z]{1,4})?\.(safetensors|bin|json|md|txt)", fullmatch=True)
    )
)
def test_selection_never_mixes_weight_formats_or_reads_subfolders(names: list[str]) -> None:
    chosen = select_files(names, {})
    assert set(chosen) <= set(names)
    assert all("/" not in n for n in chosen)
    assert not (
        any(n.endswith(".safetensors") for n in chosen) and any(n.endswith(".bin") for n in chosen)
    )


def test_warm_hub_pull_sends_no_request(hub: tuple[Server, Server], tmp_path: Path) -> None:
    hub_srv, cdn = hub
    env = {"HF_ENDPOINT": hub_srv.url}
    assert run_pull("hf://org/model", str(tmp_path), env=env).returncode == 0
    before = len(hub_srv.state.requests) + len(cdn.state.requests)
    warm = run_pull("hf://org/model", str(tmp_path), env=env)
    assert warm.returncode == 0
    assert "cache hit" in warm.stderr
    assert len(hub_srv.state.requests) + len(cdn.state.requests) == before


def test_offline_mode_without_a_cache_says_so(hub: tuple[Server, Server], tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": hub[0].url, "HF_HUB_OFFLINE": "1"}
    res = run_pull("hf://org/model", str(tmp_path), env=env)
    assert res.returncode == 2
    assert "HF_HUB_OFFLINE is set" in res.stderr
