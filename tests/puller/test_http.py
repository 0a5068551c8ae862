"""https:// pulls against a real ranged HTTP server on 127.0.0.1, including dropped connections."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.puller.conftest import listing, run_pull
from tests.puller.servers import Fault, Server

from llmsvc.puller.layout import model_path

MiB = 1 << 20


def _serve(server: Server, files: dict[str, bytes]) -> None:
    server.state.files |= {f"/m/{k}": v for k, v in files.items()}


def test_single_file_lands_in_the_cache_dir_and_is_printed(
    http_server: Server, tmp_path: Path
) -> None:
    data = b"gguf" * 1000
    _serve(http_server, {"tiny.gguf": data})
    uri = f"{http_server.url}/m/tiny.gguf"
    res = run_pull(uri, str(tmp_path))
    assert res.returncode == 0, res.stderr
    path = Path(model_path(uri, None, str(tmp_path)))
    assert res.stdout.strip() == str(path)
    assert listing(path) == {"tiny.gguf": data}
    marker = json.loads((path / ".llmsvc-complete.json").read_text())
    assert marker["files"] == [{"path": "tiny.gguf", "size": len(data)}]


def test_listed_files_are_fetched_in_parallel_ranges(http_server: Server, tmp_path: Path) -> None:
    big = bytes(range(256)) * (12 * MiB // 256)
    _serve(http_server, {"w.safetensors": big, "config.json": b"{}"})
    uri = f"{http_server.url}/m"
    res = run_pull(
        uri,
        str(tmp_path),
        "--file",
        "w.safetensors",
        "--file",
        "config.json",
        "--part-size",
        "2Mi",
        "--multipart-threshold",
        "4Mi",
    )
    assert res.returncode == 0, res.stderr
    assert listing(Path(res.stdout.strip())) == {"w.safetensors": big, "config.json": b"{}"}
    ranges = {r.range for r in http_server.state.gets("/m/w.safetensors")}
    assert {f"bytes={s}-{s + 2 * MiB - 1}" for s in range(0, 12 * MiB, 2 * MiB)} <= ranges
    assert http_server.state.served("/m/w.safetensors") == len(big) + 1  # + the 1-byte probe


def test_dropped_connection_resumes_from_the_byte_reached(
    http_server: Server, tmp_path: Path
) -> None:
    data = hashlib.sha256(b"x").digest() * (3 * MiB // 32)
    _serve(http_server, {"w.bin": data})
    http_server.state.faults["/m/w.bin"] = Fault(drop_after=MiB + 12345, times=2)
    res = run_pull(f"{http_server.url}/m/w.bin", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert listing(Path(res.stdout.strip())) == {"w.bin": data}
    gets = http_server.state.gets("/m/w.bin")
    # probe (dropped at once? no: 1 byte < limit), then a drop, then a resumed range
    resumed = [r.range for r in gets if r.range and not r.range.startswith("bytes=0-")]
    assert resumed, [r.range for r in gets]
    assert http_server.state.served("/m/w.bin") < len(data) + MiB + 12345 + 10
    assert "retry" in res.stderr


def test_partial_file_is_kept_when_the_network_gives_up(
    http_server: Server, tmp_path: Path
) -> None:
    data = bytes(range(256)) * (2 * MiB // 256)
    _serve(http_server, {"w.bin": data})
    http_server.state.faults["/m/w.bin"] = Fault(drop_after=MiB, times=2)  # probe + first GET
    uri = f"{http_server.url}/m/w.bin"
    first = run_pull(uri, str(tmp_path), "--retries", "0")
    assert first.returncode == 6, first.stderr
    model = Path(model_path(uri, None, str(tmp_path)))
    assert not (model / ".llmsvc-complete.json").exists()
    state = json.loads((model / ".llmsvc-tmp" / "w.bin.state.json").read_text())
    assert state["parts"][0][2] > 0  # bytes on disk were recorded
    before = http_server.state.served("/m/w.bin")
    second = run_pull(uri, str(tmp_path))
    assert second.returncode == 0, second.stderr
    assert "resuming w.bin" in second.stderr
    assert listing(model) == {"w.bin": data}
    assert http_server.state.served("/m/w.bin") - before <= len(data) - state["parts"][0][2] + 1


def test_retries_server_errors_then_succeeds(http_server: Server, tmp_path: Path) -> None:
    _serve(http_server, {"c.json": b"{}"})
    http_server.state.faults["/m/c.json"] = Fault(status=503, times=2)
    res = run_pull(f"{http_server.url}/m/c.json", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("retry") == 2


def test_missing_file_exits_3(http_server: Server, tmp_path: Path) -> None:
    res = run_pull(f"{http_server.url}/m/none.bin", str(tmp_path))
    assert res.returncode == 3
    assert "does not exist" in res.stderr


def test_access_denied_names_the_token_variable_not_the_token(
    http_server: Server, tmp_path: Path
) -> None:
    _serve(http_server, {"c.json": b"{}"})
    http_server.state.token = "right-token-1234567890"
    uri = f"{http_server.url}/m/c.json"
    anon = run_pull(uri, str(tmp_path))
    assert anon.returncode == 4
    assert "set LLMSVC_HTTP_TOKEN" in anon.stderr
    wrong = run_pull(uri, str(tmp_path), env={"LLMSVC_HTTP_TOKEN": "wrong-token-abcdefgh9876"})
    assert wrong.returncode == 4
    assert "LLMSVC_HTTP_TOKEN (ending ...9876)" in wrong.stderr
    assert "wrong-token" not in wrong.stderr
    ok = run_pull(uri, str(tmp_path), env={"LLMSVC_HTTP_TOKEN": "right-token-1234567890"})
    assert ok.returncode == 0, ok.stderr


def test_partial_file_of_a_changed_resource_starts_over(
    http_server: Server, tmp_path: Path
) -> None:
    old, new = b"a" * (2 * MiB), b"b" * (2 * MiB)
    _serve(http_server, {"w.bin": old})
    http_server.state.faults["/m/w.bin"] = Fault(drop_after=MiB, times=2)
    uri = f"{http_server.url}/m/w.bin"
    assert run_pull(uri, str(tmp_path), "--retries", "0").returncode == 6
    _serve(http_server, {"w.bin": new})  # same size, new ETag
    res = run_pull(uri, str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "resuming" not in res.stderr
    assert (Path(res.stdout.strip()) / "w.bin").read_bytes() == new


def test_partial_file_without_a_validator_is_not_resumed(
    http_server: Server, tmp_path: Path
) -> None:
    """Issue 13.11: no ETag, Last-Modified or checksum: a killed pull must not be resumed against
    a file that changed meanwhile (it would mix two versions and still write the marker)."""
    old, new = b"a" * (2 * MiB), b"b" * (2 * MiB)
    http_server.state.validators = False
    _serve(http_server, {"w.bin": old})
    http_server.state.faults["/m/w.bin"] = Fault(drop_after=MiB, times=2)  # probe + first GET
    uri = f"{http_server.url}/m/w.bin"
    assert run_pull(uri, str(tmp_path), "--retries", "0").returncode == 6
    _serve(http_server, {"w.bin": new})  # same size, and nothing tells the versions apart
    res = run_pull(uri, str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "not resuming w.bin" in res.stderr
    assert (Path(res.stdout.strip()) / "w.bin").read_bytes() == new


def test_retry_without_a_validator_starts_the_file_over(
    http_server: Server, tmp_path: Path
) -> None:
    """Within one run too: after a dropped connection, a file the source cannot identify is
    fetched again from its first byte, in one stream (no parallel ranges)."""
    old, new = b"a" * (6 * MiB), b"b" * (6 * MiB)
    http_server.state.validators = False
    _serve(http_server, {"w.bin": old})
    http_server.state.faults["/m/w.bin"] = Fault(drop_after=MiB, times=2, then_serve=new)
    res = run_pull(
        f"{http_server.url}/m/w.bin", str(tmp_path), "--part-size", "1Mi",
        "--multipart-threshold", "2Mi",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (Path(res.stdout.strip()) / "w.bin").read_bytes() == new
    ranges = [r.range for r in http_server.state.gets("/m/w.bin")]
    whole = f"bytes=0-{len(new) - 1}"
    assert ranges[1:] == [whole, whole], ranges  # after the probe: the whole file, twice


def test_a_file_changing_mid_download_is_never_mixed(http_server: Server, tmp_path: Path) -> None:
    """With an ETag the ranges ask If-Match: a file replaced mid-download fails the pull (exit 7,
    no marker) instead of mixing versions; the next pull fetches the new version whole."""
    old, new = b"a" * (6 * MiB), b"b" * (6 * MiB)
    _serve(http_server, {"w.bin": old})
    http_server.state.faults["/m/w.bin"] = Fault(drop_after=MiB, times=2, then_serve=new)
    uri = f"{http_server.url}/m/w.bin"
    flags = ("--part-size", "1Mi", "--multipart-threshold", "2Mi", "--concurrency", "1")
    first = run_pull(uri, str(tmp_path), *flags)
    assert first.returncode == 7, first.stderr
    assert "changed while it was being downloaded" in first.stderr
    assert not (Path(model_path(uri, None, str(tmp_path))) / ".llmsvc-complete.json").exists()
    second = run_pull(uri, str(tmp_path), *flags)
    assert second.returncode == 0, second.stderr
    assert (Path(second.stdout.strip()) / "w.bin").read_bytes() == new


def test_server_without_ranges_gets_one_stream_and_resume_skips(
    http_server: Server, tmp_path: Path
) -> None:
    data = bytes(range(256)) * (3 * MiB // 256)
    _serve(http_server, {"w.bin": data})
    http_server.state.ranges = False
    http_server.state.faults["/m/w.bin"] = Fault(drop_after=MiB + 7, times=2)
    res = run_pull(f"{http_server.url}/m/w.bin", str(tmp_path), "--multipart-threshold", "1Mi")
    assert res.returncode == 0, res.stderr
    assert (Path(res.stdout.strip()) / "w.bin").read_bytes() == data


def test_progress_lines_show_bytes_rate_and_eta(http_server: Server, tmp_path: Path) -> None:
    _serve(http_server, {"w.bin": b"p" * (3 * MiB)})
    http_server.state.rate = 2 * MiB
    res = run_pull(
        f"{http_server.url}/m/w.bin", str(tmp_path), env={"LLMSVC_PULL_PROGRESS_INTERVAL": "0.3"}
    )
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if " progress " in ln]
    assert lines
    line = lines[-1]  # the first ones may come before the first MiB arrived
    assert "/ 3.00 MiB (" in line
    assert "MiB/s, ETA " in line


def test_a_new_presigned_query_reuses_the_cache(http_server: Server, tmp_path: Path) -> None:
    _serve(http_server, {"x.gguf": b"g" * 100})
    first = run_pull(f"{http_server.url}/m/x.gguf?sig=one", str(tmp_path))
    assert first.returncode == 0
    assert "sig=" not in first.stderr
    again = run_pull(f"{http_server.url}/m/x.gguf?sig=two", str(tmp_path))
    assert again.returncode == 0
    assert "cache hit" in again.stderr
    assert "sig=" not in again.stderr  # signatures are never logged
