"""``hf://ORG/NAME`` through huggingface_hub: only the files a vLLM load needs.

huggingface_hub resolves the revision to a commit and lists the files with their sizes and
digests (``model_info(files_metadata=True)``: sha256 for LFS files, git blob ids otherwise),
honouring ``HF_ENDPOINT`` and ``HF_TOKEN``. Bytes come from the hub's ``resolve`` URLs pinned to
that commit, fetched by the shared ranged downloader (redirects to the CDN drop the token).
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from llmsvc.puller.errors import AccessDeniedError, NotFoundError, TransientError, UsageError
from llmsvc.puller.manifest import Checksum, RemoteFile
from llmsvc.puller.sources import Listing
from llmsvc.puller.sources.http import HttpClient, HttpStream, describe_token

DEFAULT_ENDPOINT = "https://huggingface.co"
CONFIG_GLOBS = ("*.json", "*.model", "*.tiktoken", "*.txt", "*.py", "*.jinja", "tokenizer*")
WEIGHTS = (
    ("*.safetensors", "model.safetensors.index.json"),
    ("*.bin", "pytorch_model.bin.index.json"),
)


def select_files(
    names: Iterable[str], index_shards: dict[str, set[str]], include: Iterable[str] = ()
) -> list[str]:
    """The files vLLM loads: top-level configs and tokenizer, and one format of weights.

    Safetensors win over ``*.bin``; when the format has an index, only its shards are taken
    (so duplicates like ``consolidated.safetensors`` are skipped). ``include`` adds globs.
    """
    names = sorted(names)
    top = [n for n in names if "/" not in n]
    chosen = {n for n in top if any(fnmatch.fnmatch(n, g) for g in CONFIG_GLOBS)}
    for glob, index in WEIGHTS:
        weights = [n for n in top if fnmatch.fnmatch(n, glob)]
        if weights:
            shards = index_shards.get(index)
            chosen |= set(weights) if shards is None else shards & set(names)
            chosen -= {other for _, other in WEIGHTS if other != index}
            break
    chosen |= {n for n in names if any(fnmatch.fnmatch(n, g) for g in include)}
    return sorted(chosen)


class HfSource:
    """A model repository on the hub (or any server speaking its API at ``HF_ENDPOINT``)."""

    def __init__(self, repo_id: str, revision: str | None, include: list[str], timeout: float):
        from huggingface_hub import HfApi, get_token
        from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

        self.repo_id, self.revision, self.include = repo_id, revision or "main", include
        self.endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
        self.token = get_token()
        self.credential = describe_token("HF_TOKEN", self.token)
        self.api = HfApi(endpoint=self.endpoint, token=self.token)
        headers = build_hf_headers(token=self.token, library_name="llmsvc-pull")
        self.http = HttpClient(headers, self.credential, timeout, on_error=self._hub_error)
        self.commit = ""

    def url(self, path: str) -> str:
        return f"{self.endpoint}/{self.repo_id}/resolve/{self.commit}/{quote(path)}"

    def listing(self) -> Listing:
        info = self._info()
        self.commit = str(info.sha)
        siblings = {s.rfilename: s for s in info.siblings or []}
        shards = {i: self._index(i) for _, i in WEIGHTS if i in siblings}
        names = select_files(siblings, {k: v for k, v in shards.items() if v}, self.include)
        return Listing([_remote(siblings[n], self.url(n)) for n in names], self.commit)

    def _info(self) -> Any:
        import httpx2
        from huggingface_hub import errors

        try:
            return self.api.model_info(self.repo_id, revision=self.revision, files_metadata=True)
        except errors.OfflineModeIsEnabled as exc:
            raise UsageError(
                f"HF_HUB_OFFLINE is set but hf://{self.repo_id} is not in the cache yet; "
                "unset it for the first pull"
            ) from exc
        except errors.GatedRepoError as exc:
            raise AccessDeniedError(
                f"hf://{self.repo_id} is gated: accept its terms on the hub for the account of "
                f"{self.credential}"
            ) from exc
        except errors.RevisionNotFoundError as exc:
            raise NotFoundError(f"hf://{self.repo_id} has no revision {self.revision!r}") from exc
        except errors.RepositoryNotFoundError as exc:
            raise NotFoundError(
                f"hf://{self.repo_id} not found at {self.endpoint}, or private and not readable "
                f"with {self.credential}"
            ) from exc
        except errors.HfHubHTTPError as exc:
            raise self._status(exc.response.status_code, str(exc).splitlines()[0]) from exc
        except httpx2.TransportError as exc:
            raise TransientError(f"cannot reach {self.endpoint}: {exc!r}") from exc

    def _status(self, status: int, text: str) -> Exception:
        if status in (401, 403):
            return AccessDeniedError(f"hf://{self.repo_id}: {text}; tried {self.credential}")
        return TransientError(f"hf://{self.repo_id}: HTTP {status}: {text}")

    def _index(self, name: str) -> set[str] | None:
        stream = self.http.get(self.url(name))
        buf, chunks = bytearray(1 << 16), []
        try:
            while n := stream.readinto(memoryview(buf)):
                chunks.append(bytes(buf[:n]))
        finally:
            stream.close()
        try:
            return {str(v) for v in json.loads(b"".join(chunks))["weight_map"].values()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def open(self, f: RemoteFile, start: int, end: int) -> HttpStream:
        return self.http.get(f.key, start, end)

    def expected(self, f: RemoteFile) -> Checksum | None:
        return f.checksum

    def _hub_error(self, resp: Any, url: str) -> None:
        code = resp.headers.get("X-Error-Code", "")
        if code == "EntryNotFound":
            raise NotFoundError(f"hf://{self.repo_id}@{self.commit} has no file {url}")
        if code == "GatedRepo":
            raise AccessDeniedError(f"hf://{self.repo_id} is gated; tried {self.credential}")


def _remote(sibling: Any, url: str) -> RemoteFile:
    if sibling.lfs is not None:
        return RemoteFile(
            sibling.rfilename, int(sibling.lfs.size), Checksum("sha256", sibling.lfs.sha256), url
        )
    checksum = Checksum("git-sha1", sibling.blob_id) if sibling.blob_id else None
    return RemoteFile(sibling.rfilename, int(sibling.size or 0), checksum, url)
