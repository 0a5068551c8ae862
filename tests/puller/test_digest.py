"""Incremental digests equal whole-file digests however the bytes are split."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from llmsvc.puller.manifest import Checksum, etag_part_sizes, new_digest
from llmsvc.puller.parts import Part, contiguous, plan_parts
from llmsvc.puller.progress import human, progress_line

MiB = 1 << 20


def _etag(data: bytes, part: int) -> str:
    digests = [hashlib.md5(data[i : i + part]).digest() for i in range(0, len(data), part)]
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(0, 6 * MiB), max_size=6), size=st.integers(5 * MiB + 1, 6 * MiB))
def test_split_updates_match_whole_digests(cuts: list[int], size: int) -> None:
    data = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    points = sorted({c for c in cuts if c < size})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, size], strict=True)]
    checks = [
        Checksum("sha256", hashlib.sha256(data).hexdigest()),
        Checksum("md5", hashlib.md5(data).hexdigest()),
        Checksum("git-sha1", hashlib.sha1(f"blob {size}\0".encode() + data).hexdigest()),
        Checksum("s3-etag", _etag(data, 5 * MiB)),
    ]
    for c in checks:
        d = new_digest(c, size)
        for p in pieces:
            d.update(p)
        assert d.ok(), c.algo
        bad = new_digest(
            Checksum(c.algo, c.value.replace(c.value[0], "f" if c.value[0] != "f" else "e", 1)),
            size,
        )
        bad.update(data)
        assert not bad.ok()


def test_etag_part_size_guesses_include_the_common_ones() -> None:
    assert 8 * MiB in etag_part_sizes(20 * MiB, 3)
    assert etag_part_sizes(20 * MiB, 4) == [5 * MiB]
    assert etag_part_sizes(20 * MiB + 1, 4) == [6 * MiB, 5 * MiB + 1]  # rounded guess, exact guess


def test_plan_parts_covers_the_file_exactly() -> None:
    parts = plan_parts(10 * MiB + 1, True, 4 * MiB, 8 * MiB)
    assert parts == [(0, 4 * MiB), (4 * MiB, 8 * MiB), (8 * MiB, 10 * MiB + 1)]
    assert plan_parts(10 * MiB, False, 4 * MiB, 8 * MiB) == [(0, 10 * MiB)]
    assert plan_parts(0, True, 4 * MiB, 8 * MiB) == [(0, 0)]


def test_contiguous_stops_at_the_first_incomplete_part() -> None:
    parts = [Part(0, 10, 10), Part(10, 20, 4), Part(20, 30, 10)]
    assert contiguous(parts, 30) == 14
    assert contiguous([Part(0, 10, 10)], 10) == 10


def test_progress_formatting() -> None:
    assert human(1536 * MiB) == "1.50 GiB"
    assert human(12) == "12 B"
    line = progress_line(MiB, 4 * MiB, 2.0, 1, 3)
    assert line == "progress 1.00 MiB / 4.00 MiB (25.0%), 1/3 files, 512.00 KiB/s, ETA 6s"
