"""``s3://BUCKET/PREFIX`` (and S3-compatible stores via ``AWS_ENDPOINT_URL``) with boto3.

Every object under ``PREFIX/`` is fetched, keeping its path below the prefix. Credentials come
from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, web identity, instance
role); with none at all, requests are sent unsigned so public buckets work. Plain ETags are MD5s
and multipart ETags are recomputed from the part size; objects encrypted with KMS or customer
keys have ETags that are not digests, so only their size is checked.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from llmsvc.puller.errors import (
    CHANGED,
    AccessDeniedError,
    NotFoundError,
    PullError,
    TransientError,
    VerifyError,
)
from llmsvc.puller.manifest import Checksum, RemoteFile
from llmsvc.puller.sources import Listing

_MD5 = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART = re.compile(r"^[0-9a-f]{32}-\d+$")
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
    "403",
    "401",
}
_MISSING = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}
_RETRY = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500"}


def etag_checksum(etag: str) -> Checksum | None:
    """The checksum an S3 ETag stands for, if it is a digest at all."""
    value = etag.strip('"').lower()
    if _MD5.match(value):
        return Checksum("md5", value)
    if _MULTIPART.match(value):
        return Checksum("s3-etag", value)
    return None


def describe_credentials(creds: Any) -> str:
    """Which credential was tried, without the secret: method and the key id's last 4 chars."""
    if creds is None:
        return "no credentials (anonymous); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    key = str(getattr(creds, "access_key", "") or "")
    method = getattr(creds, "method", "unknown")
    source = (
        "AWS_ACCESS_KEY_ID from the environment" if method == "env" else f"{method} credentials"
    )
    return f"{source} (key id ending ...{key[-4:]})"


class S3Stream:
    """A ranged GetObject body."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readinto(self, buf: memoryview) -> int:
        try:
            data = self._body.read(len(buf))
            buf[: len(data)] = data
            return len(data)
        except (BotoCoreError, OSError) as exc:
            raise TransientError(f"reading from S3 failed: {exc!r}") from exc

    def close(self) -> None:
        self._body.close()


class S3Source:
    """List and fetch the objects under ``s3://bucket/prefix/``."""

    def __init__(self, bucket: str, prefix: str, concurrency: int, timeout: float) -> None:
        self.bucket, self.prefix = bucket, f"{prefix}/" if prefix else ""
        session = boto3.session.Session()
        creds = session.get_credentials()
        self.credential = describe_credentials(creds)
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        config = Config(
            max_pool_connections=concurrency + 4,
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": 1, "mode": "standard"},
            signature_version=UNSIGNED if creds is None else None,
            s3={"addressing_style": "path" if endpoint else "auto"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.client = session.client("s3", endpoint_url=endpoint, region_name=region, config=config)
        self.encrypted: set[str] = set()

    def listing(self) -> Listing:
        files = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in self._call(lambda: list(pages), "listing"):
            for obj in page.get("Contents", []):
                key = str(obj["Key"])
                if key.endswith("/"):
                    continue
                etag = str(obj.get("ETag", ""))
                extra = {"validator": etag}  # also for ETags that are no digest (KMS)
                name, size = key[len(self.prefix) :], int(obj["Size"])
                files.append(RemoteFile(name, size, etag_checksum(etag), key=key, extra=extra))
        if not files:
            raise NotFoundError(f"no objects under s3://{self.bucket}/{self.prefix}")
        digest = hashlib.sha256("".join(f"{f.key}{f.checksum}{f.size}" for f in files).encode())
        return Listing(files, f"listing-sha256:{digest.hexdigest()[:16]}")

    def open(self, f: RemoteFile, start: int, end: int) -> S3Stream:
        rng = f"bytes={start}-{end - 1}"
        # If-Match: a range of a newer object would mix two versions in one file.
        etag = f.extra.get("validator", "")
        resp = self._call(lambda: self._get(f.key, rng, etag), f.key)
        if resp.get("ServerSideEncryption", "").startswith("aws:kms") or resp.get(
            "SSECustomerAlgorithm"
        ):
            self.encrypted.add(f.key)
        return S3Stream(resp["Body"])

    def _get(self, key: str, rng: str, etag: str) -> Any:
        if etag:
            return self.client.get_object(Bucket=self.bucket, Key=key, Range=rng, IfMatch=etag)
        return self.client.get_object(Bucket=self.bucket, Key=key, Range=rng)

    def expected(self, f: RemoteFile) -> Checksum | None:
        """The checksum to verify: none for KMS/SSE-C objects, whose ETag is not a digest."""
        return None if f.key in self.encrypted else f.checksum

    def _call(self, fn: Any, what: str) -> Any:
        try:
            return fn()
        except ClientError as exc:
            raise self._client_error(exc, what) from exc
        except BotoCoreError as exc:
            raise TransientError(f"S3 {what}: {exc}") from exc

    def _client_error(self, exc: ClientError, what: str) -> Exception:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        where = f"s3://{self.bucket}/{self.prefix} ({what})"
        if code == "PreconditionFailed" or status == 412:
            return VerifyError(f"{where}: {CHANGED}")
        if code in _DENIED or status == 403:
            return AccessDeniedError(f"{where}: access denied ({code}) with {self.credential}")
        if code in _MISSING or status == 404:
            return NotFoundError(f"{where}: not found ({code}); check the bucket and prefix")
        if code in _RETRY or status >= 500 or status == 429:
            return TransientError(f"{where}: {code} (HTTP {status})")
        return PullError(f"{where}: S3 error {code} (HTTP {status})")
