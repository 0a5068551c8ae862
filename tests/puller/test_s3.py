"""s3:// pulls against moto in server mode on 127.0.0.1 (a real S3 HTTP API)."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from tests.puller.conftest import listing, run_pull, s3_client, synthetic_model
from tests.puller.servers import Handler, Server, State

from llmsvc.puller.layout import model_path
from llmsvc.puller.pull import Request, pull
from llmsvc.puller.sources.s3 import S3Source, etag_checksum
from llmsvc.puller.transfer import Options

MiB = 1 << 20


@pytest.fixture
def bucket(s3: dict[str, str]) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3_client(s3).create_bucket(Bucket=name)
    return name


def _put(env: dict[str, str], bucket: str, files: dict[str, bytes], prefix: str = "llama") -> None:
    client = s3_client(env)
    for name, data in files.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=data)


def test_pulls_every_object_under_the_prefix(
    s3: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    files = synthetic_model() | {"sub/extra.txt": b"kept with its path", "empty.txt": b""}
    _put(s3, bucket, files)
    s3_client(s3).put_object(Bucket=bucket, Key="llama-other/x", Body=b"not under llama/")
    res = run_pull(f"s3://{bucket}/llama", str(tmp_path), env=s3)
    assert res.returncode == 0, res.stderr
    model = tmp_path / f"s3/{bucket}/llama/latest"
    assert res.stdout.strip() == str(model)
    assert listing(model) == files
    marker = json.loads((model / ".llmsvc-complete.json").read_text())
    assert {f["checksum"]["algo"] for f in marker["files"]} == {"md5"}


def test_large_multipart_object_is_fetched_as_parallel_ranges_and_etag_verified(
    s3: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    data = bytes(range(251)) * (20 * MiB // 251)
    client = s3_client(s3)
    cfg = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    client.upload_fileobj(io.BytesIO(data), bucket, "big/w.safetensors", Config=cfg)
    client.put_object(Bucket=bucket, Key="big/config.json", Body=b"{}")
    source = CountingS3(bucket, "big", 4, 10.0)
    opts = Options(concurrency=4, part_size=2 * MiB, threshold=4 * MiB)
    path = pull(Request(f"s3://{bucket}/big", tmp_path), opts, lambda u, r, o: source)
    assert (path / "w.safetensors").read_bytes() == data
    ranges = sorted(r for k, r in source.opened if k == "big/w.safetensors")
    assert ranges == [(s, min(s + 2 * MiB, len(data))) for s in range(0, len(data), 2 * MiB)]
    marker = json.loads((path / ".llmsvc-complete.json").read_text())
    etag = next(f["checksum"] for f in marker["files"] if f["path"] == "w.safetensors")
    assert etag["algo"] == "s3-etag"
    assert etag["value"].endswith("-4")


class CountingS3(S3Source):
    """The real S3 source, recording which ranges were opened."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.opened: list[tuple[str, tuple[int, int]]] = []

    def open(self, f, start, end):  # type: ignore[no-untyped-def]
        self.opened.append((f.key, (start, end)))
        return super().open(f, start, end)


def test_missing_bucket_and_empty_prefix_exit_3(
    s3: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    nobucket = run_pull("s3://no-such-bucket-here/x", str(tmp_path), env=s3)
    assert nobucket.returncode == 3, nobucket.stderr
    empty = run_pull(f"s3://{bucket}/nothing", str(tmp_path), env=s3)
    assert empty.returncode == 3
    assert f"no objects under s3://{bucket}/nothing/" in empty.stderr


def test_access_denied_names_the_key_id_not_the_secret(tmp_path: Path) -> None:
    """A server answering S3's AccessDenied error document, as a bucket policy would."""

    class Denied(Handler):
        def route(self, head: bool) -> None:
            body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with Server(Denied, State()) as srv:
        env = {
            "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYQ7ZQ",
            "AWS_SECRET_ACCESS_KEY": "very-secret-value",
        }
        res = run_pull(
            "s3://private-bucket/llama", str(tmp_path), env=env | {"AWS_ENDPOINT_URL": srv.url}
        )
    assert res.returncode == 4
    assert "AWS_ACCESS_KEY_ID from the environment (key id ending ...Q7ZQ)" in res.stderr
    assert "very-secret-value" not in res.stderr
    assert "AKIAEXAMPLEKEYQ7ZQ" not in res.stderr


def test_anonymous_access_is_tried_without_credentials(moto: str, tmp_path: Path) -> None:
    boto3.client(
        "s3",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    ).create_bucket(Bucket="public-models")
    res = run_pull("s3://public-models/none", str(tmp_path), env={"AWS_ENDPOINT_URL": moto})
    assert res.returncode == 3, res.stderr  # reached the bucket unsigned: empty prefix


def test_etag_kinds() -> None:
    assert etag_checksum('"0123456789abcdef0123456789abcdef"').algo == "md5"  # type: ignore[union-attr]
    assert etag_checksum('"0123456789abcdef0123456789abcdef-12"').algo == "s3-etag"  # type: ignore[union-attr]
    assert etag_checksum('"opaque"') is None


def test_cache_dir_matches_layout(s3: dict[str, str], bucket: str, tmp_path: Path) -> None:
    _put(s3, bucket, {"config.json": b"{}"}, prefix="a/b")
    res = run_pull(f"s3://{bucket}/a/b", str(tmp_path), "--revision", "2024-06", env=s3)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == model_path(f"s3://{bucket}/a/b", "2024-06", str(tmp_path))
