"""The cache protocol: warm no-op, corruption, crash and resume, concurrent pulls, disk space."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.puller.conftest import listing, run_pull, synthetic_model
from tests.puller.servers import Server

from llmsvc.puller.errors import OutOfSpaceError
from llmsvc.puller.layout import model_path
from llmsvc.puller.pull import Request, pull
from llmsvc.puller.transfer import Options

MiB = 1 << 20
MARKER = ".llmsvc-complete.json"


@pytest.fixture
def model(http_server: Server) -> tuple[str, list[str], dict[str, bytes]]:
    """A synthetic model on the HTTP server: (base URI, --file args, files)."""
    files = synthetic_model(shards=3, shard_size=MiB)
    http_server.state.files |= {f"/m/{k}": v for k, v in files.items()}
    http_server.state.sha256 = True
    args = [a for name in files for a in ("--file", name)]
    return f"{http_server.url}/m", args, files


def _dir(uri: str, dest: Path) -> Path:
    return Path(model_path(uri, None, str(dest)))


def test_warm_rerun_is_a_no_op_without_network(
    http_server: Server, model: tuple[str, list[str], dict[str, bytes]], tmp_path: Path
) -> None:
    uri, args, files = model
    assert run_pull(uri, str(tmp_path), *args).returncode == 0
    before = len(http_server.state.requests)
    started = time.monotonic()
    warm = run_pull(uri, str(tmp_path), *args)
    elapsed = time.monotonic() - started
    assert warm.returncode == 0, warm.stderr
    assert "cache hit" in warm.stderr
    assert len(http_server.state.requests) == before
    assert elapsed < 1.0
    assert listing(_dir(uri, tmp_path)) == files


def test_other_file_selection_does_not_trust_the_marker(
    http_server: Server, model: tuple[str, list[str], dict[str, bytes]], tmp_path: Path
) -> None:
    uri, args, _ = model
    assert run_pull(uri, str(tmp_path), *args[:2]).returncode == 0
    res = run_pull(uri, str(tmp_path), *args)
    assert res.returncode == 0
    assert "cache hit" not in res.stderr
    assert "1 of 6 files already in place" in res.stderr


def test_flipped_bytes_are_found_by_verify_and_only_that_file_is_refetched(
    http_server: Server, model: tuple[str, list[str], dict[str, bytes]], tmp_path: Path
) -> None:
    uri, args, files = model
    assert run_pull(uri, str(tmp_path), *args).returncode == 0
    shard = _dir(uri, tmp_path) / "model-00002-of-00003.safetensors"
    _flip(shard, 4242)
    trusted = run_pull(uri, str(tmp_path), *args)
    assert "cache hit" in trusted.stderr  # sizes match: the marker is trusted without --verify
    before = {p: http_server.state.served(p) for p in http_server.state.files}
    res = run_pull(uri, str(tmp_path), *args, "--verify")
    assert res.returncode == 0, res.stderr
    assert "model-00002-of-00003.safetensors is missing, truncated or corrupted" in res.stderr
    assert listing(_dir(uri, tmp_path)) == files
    fetched = {p for p in before if http_server.state.served(p) > before[p] + 1}
    assert fetched == {"/m/model-00002-of-00003.safetensors"}


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_truncated_file_is_found_without_verify(
    model: tuple[str, list[str], dict[str, bytes]], tmp_path: Path
) -> None:
    uri, args, files = model
    assert run_pull(uri, str(tmp_path), *args).returncode == 0
    shard = _dir(uri, tmp_path) / "model-00001-of-00003.safetensors"
    os.truncate(shard, 1000)
    res = run_pull(uri, str(tmp_path), *args)
    assert res.returncode == 0, res.stderr
    assert "cache hit" not in res.stderr
    assert listing(_dir(uri, tmp_path)) == files


def test_checksum_mismatch_after_download_is_refetched_then_fails(
    http_server: Server, tmp_path: Path
) -> None:
    """A server advertising a sha256 its bytes do not have: fetched twice, then exit 7."""
    from tests.puller.servers import Handler, State

    class Lying(Handler):
        def send_file(self, data, entry, head, headers=None):  # type: ignore[no-untyped-def]
            super().send_file(data, entry, head, {"X-Checksum-Sha256": "ab" * 32})

    with Server(Lying, State(files={"/w.bin": b"z" * 5000})) as srv:
        res = run_pull(f"{srv.url}/w.bin", str(tmp_path))
        gets = [r for r in srv.state.gets("/w.bin") if r.sent > 1]
    assert res.returncode == 7, res.stderr
    assert "does not match its checksum; fetching it again" in res.stderr
    assert len(gets) == 2
    assert not (_dir(f"{srv.url}/w.bin", tmp_path) / MARKER).exists()


def test_killed_pull_leaves_no_marker_and_the_next_one_resumes(
    http_server: Server, tmp_path: Path
) -> None:
    data = bytes(range(256)) * (6 * MiB // 256)
    http_server.state.files["/m/w.safetensors"] = data
    http_server.state.rate = 2 * MiB
    uri = f"{http_server.url}/m/w.safetensors"
    proc = _spawn(uri, tmp_path)
    model = _dir(uri, tmp_path)
    state = model / ".llmsvc-tmp" / "w.safetensors.state.json"
    deadline = time.monotonic() + 15
    while _saved_bytes(state) < MiB:  # progress on disk is recorded every second
        assert time.monotonic() < deadline
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = _saved_bytes(state)
    assert saved >= MiB
    assert not (model / MARKER).exists()
    assert not (model / "w.safetensors").exists()  # only the temporary name is written
    http_server.state.rate = None
    first = len(http_server.state.requests)
    res = run_pull(uri, str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "resuming w.safetensors" in res.stderr
    assert (model / "w.safetensors").read_bytes() == data
    # the resumed run fetched only what the killed one had not recorded (+ the 1-byte probe)
    assert sum(r.sent for r in http_server.state.requests[first:]) <= len(data) - saved + 1


def _saved_bytes(state: Path) -> int:
    try:
        return sum(done for _, _, done in json.loads(state.read_text())["parts"])
    except (OSError, ValueError):
        return 0


def _spawn(uri: str, dest: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "llmsvc.cli", "pull", uri, str(dest)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_pulls_download_once(
    http_server: Server, model: tuple[str, list[str], dict[str, bytes]], tmp_path: Path
) -> None:
    uri, args, files = model
    http_server.state.rate = 2 * MiB  # ~1.5 s: the four pulls overlap even on a busy machine
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run_pull(uri, str(tmp_path), *args), range(4)))
    assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    assert len({r.stdout for r in results}) == 1
    for name, data in files.items():
        assert http_server.state.served(f"/m/{name}") == len(data) + 1  # one probe, one download
    downloaded = [r for r in results if "fetching 6 files" in r.stderr]
    waited = [r for r in results if "another pull completed" in r.stderr]
    late = [r for r in results if "cache hit" in r.stderr]  # started after the marker was written
    assert len(downloaded) == 1
    assert len(waited) + len(late) == 3
    assert waited  # the lock path was taken
    assert all("waiting for" in r.stderr and "pid" in r.stderr for r in waited)
    assert listing(_dir(uri, tmp_path)) == files


def test_out_of_space_is_refused_before_downloading(
    http_server: Server, model: tuple[str, list[str], dict[str, bytes]], tmp_path: Path
) -> None:
    uri, args, _ = model
    opts = Options(free_space=lambda _: 2 * MiB)
    req = Request(uri, tmp_path, files=tuple(args[1::2]))
    with pytest.raises(
        OutOfSpaceError, match=r"needs 3\.00 MiB more but its volume has 2\.00 MiB free"
    ):
        pull(req, opts)
    assert all(r.sent <= 1 for r in http_server.state.gets())  # only the size probes


@pytest.fixture
def tiny_volume(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs (needs root to mount; skipped otherwise, with the reason)."""
    mnt = tmp_path / "vol"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (not root?): {res.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_full_volume_exits_5(
    model: tuple[str, list[str], dict[str, bytes]], tiny_volume: Path
) -> None:
    uri, args, _ = model
    res = run_pull(uri, str(tiny_volume), *args)
    assert res.returncode == 5, res.stderr
    assert "give the cache volume more space" in res.stderr


def test_write_failing_with_enospc_exits_5(
    model: tuple[str, list[str], dict[str, bytes]], tiny_volume: Path
) -> None:
    uri, args, _ = model
    opts = Options(
        free_space=lambda _: 1 << 40
    )  # a probe that lies, as on some network filesystems
    with pytest.raises(OutOfSpaceError, match="ran out of space while writing"):
        pull(Request(uri, tiny_volume, files=tuple(args[1::2])), opts)


class _Listing:
    """An in-process source listing whatever it is given (for path-safety checks)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def listing(self):  # type: ignore[no-untyped-def]
        from llmsvc.puller.manifest import RemoteFile
        from llmsvc.puller.sources import Listing

        return Listing([RemoteFile(self.path, 1)], "")

    def open(self, f, start, end):  # type: ignore[no-untyped-def]
        raise AssertionError("an unsafe path must never be fetched")

    def expected(self, f):  # type: ignore[no-untyped-def]
        return None


@pytest.mark.parametrize(
    "path", ["../evil", "a/../../evil", "/etc/passwd", ".llmsvc-complete.json"]
)
def test_unsafe_listed_paths_are_refused(path: str, tmp_path: Path) -> None:
    from llmsvc.puller.errors import VerifyError

    with pytest.raises(VerifyError, match="unsafe file name"):
        pull(Request("s3://bucket/x", tmp_path), Options(), lambda u, r, o: _Listing(path))
    assert not (tmp_path / "s3/evil").exists()


def test_unwritable_dest_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "ro").write_text("a file where a directory should be")
    res = run_pull("s3://bucket/x", str(tmp_path / "ro"))
    assert res.returncode == 2
    assert "mount DEST read-write" in res.stderr


def test_no_checksum_checks_sizes_only_but_records_the_checksum_for_verify(tmp_path: Path) -> None:
    from tests.puller.servers import Handler, State

    class Lying(Handler):
        def send_file(self, data, entry, head, headers=None):  # type: ignore[no-untyped-def]
            super().send_file(data, entry, head, {"X-Checksum-Sha256": "cd" * 32})

    with Server(Lying, State(files={"/w.bin": b"z" * 5000})) as srv:
        env = {"LLMSVC_PULL_CHECKSUMS": "0", "LLMSVC_PULL_FSYNC": "0"}
        fast = run_pull(f"{srv.url}/w.bin", str(tmp_path), env=env)
        assert fast.returncode == 0, fast.stderr
        marker = (_dir(f"{srv.url}/w.bin", tmp_path) / MARKER).read_text()
        assert "cd" * 32 in marker
        verify = run_pull(f"{srv.url}/w.bin", str(tmp_path), "--verify")
    assert verify.returncode == 7
    assert "w.bin is missing, truncated or corrupted" in verify.stderr
