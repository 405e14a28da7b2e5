"""Finished media in an S3-compatible bucket (AWS S3, MinIO, R2, OSS, ...), addressed as ``s3://bucket/prefix``.

boto3 runs in a worker thread rather than aiobotocore on the event loop: ``upload_file`` streams a
file from disk as a multipart upload (parts in parallel, memory bounded by part size x concurrency,
the upload aborted on failure), which aiobotocore would leave us to write by hand; aiobotocore also
pins exact botocore releases and brings aiohttp beside our httpx. One upload per finished video is
rare enough that a thread per upload costs nothing that matters.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from kensa_gql.domain.errors import StorageUnavailable
from kensa_gql.domain.ports import StoredFile
from kensa_gql.settings import SettingsError

PART_SIZE = 16 * 1024 * 1024  # a 512 MiB video is 32 parts; S3 wants at least 5 MiB per part
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the SigV4 limit
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_LIKE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
PROBE_KEY = ".kensa-ready"  # written and deleted by the readiness check, at most once a PROBE_SECONDS
PROBE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "some/path/" (always ending with a slash)


def parse_s3_url(url: str) -> S3Location:
    """``s3://bucket[/prefix]`` -> bucket and normalised prefix; SettingsError for anything else.

    Messages never repeat the URL itself: a mistaken ``s3://key:secret@bucket`` must not reach a log.
    """
    where = "KENSA_STORAGE_URL"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SettingsError(f"{where}: not a valid s3://bucket/prefix URL") from None
    if parts.scheme != "s3":
        raise SettingsError(f"{where}: expected s3://bucket/prefix")
    if "@" in parts.netloc or port is not None:
        raise SettingsError(f"{where}: put credentials and endpoint in the AWS_* variables, not in the URL")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise SettingsError(f"{where}: s3:// URLs take no query or fragment")
    bucket = parts.netloc
    if not bucket:
        raise SettingsError(f"{where}: s3:// needs a bucket name (s3://bucket/prefix)")
    if not _BUCKET.match(bucket) or ".." in bucket or _IP_LIKE.match(bucket):
        raise SettingsError(f"{where}: {bucket!r} is not a valid S3 bucket name "
                            "(3-63 lowercase letters, digits, dots and hyphens)")
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") or "\\" in s for s in segments):
        raise SettingsError(f"{where}: the prefix must not contain '.', '..' or backslashes")
    prefix = "/".join(segments) + "/" if segments else ""
    return S3Location(bucket=bucket, prefix=prefix)


def make_client(environ: Mapping[str, str], *, addressing_style: str = "auto") -> Any:
    """An S3 client from the usual AWS variables; missing keys fall back to boto3's default chain."""
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    if addressing_style == "auto":
        # S3-compatible stores behind a custom endpoint rarely have per-bucket DNS names.
        addressing_style = "path" if endpoint else "virtual"
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": addressing_style},
        retries={"total_max_attempts": 3, "mode": "standard"},
        connect_timeout=10, read_timeout=60,
        # Only the checksums S3 requires: many S3-compatible stores reject the newer CRC headers.
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, config=config,
        aws_access_key_id=environ.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=environ.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=environ.get("AWS_SESSION_TOKEN") or None)


class S3Storage:
    """Uploads with multipart streaming; clients get ``public_base/key`` or a presigned GET URL."""

    def __init__(self, location: S3Location, *, client: Any, public_base: str = "",
                 url_expiry_seconds: int = MAX_PRESIGN_SECONDS, part_size: int = PART_SIZE,
                 concurrency: int = 4) -> None:
        if not 1 <= url_expiry_seconds <= MAX_PRESIGN_SECONDS:
            raise SettingsError(f"presigned URLs last at most {MAX_PRESIGN_SECONDS} s (7 days)")
        self.location = location
        self._client = client
        self._public_base = public_base.rstrip("/")
        self._expiry = url_expiry_seconds
        self._probed: tuple[float, StorageUnavailable | None] | None = None
        self._transfer = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size,
                                        max_concurrency=concurrency, use_threads=True)

    async def check(self) -> None:
        """Fail start-up when the bucket is missing, unreachable or not ours (needs s3:ListBucket)."""
        bucket = self.location.bucket
        try:
            await asyncio.to_thread(self._client.head_bucket, Bucket=bucket)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code", "")
            if status == 404 or code in ("404", "NoSuchBucket"):
                raise SettingsError(f"KENSA_STORAGE_URL: bucket {bucket!r} does not exist") from None
            if status in (401, 403):
                raise SettingsError(f"KENSA_STORAGE_URL: access to bucket {bucket!r} denied; check "
                                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the start-up check "
                                    "needs s3:ListBucket)") from None
            raise SettingsError(f"KENSA_STORAGE_URL: bucket {bucket!r} check failed "
                                f"(HTTP {status} {code})") from None
        except BotoCoreError as exc:
            raise SettingsError(f"KENSA_STORAGE_URL: cannot reach the S3 endpoint for bucket {bucket!r} "
                                f"({type(exc).__name__}); check AWS_ENDPOINT_URL / AWS_REGION") from None

    def object_key(self, key: str) -> str:
        segments = key.split("/")
        if not key or key.startswith("/") or any(s in ("", ".", "..") or "\\" in s for s in segments):
            raise ValueError(f"storage key is not a plain relative path: {key!r}")
        return self.location.prefix + key

    def url_for(self, object_key: str) -> str:
        if self._public_base:
            return f"{self._public_base}/{quote(object_key)}"
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.location.bucket, "Key": object_key},
            ExpiresIn=self._expiry)
        return url

    async def put(self, key: str, source: Path, content_type: str) -> StoredFile:
        """Upload ``source`` (removed afterwards, like the local store's move) to ``prefix + key``."""
        object_key = self.object_key(key)
        try:
            size = await asyncio.to_thread(self._upload, source, object_key, content_type)
        except (Boto3Error, BotoCoreError, ClientError) as exc:
            # Retryable for the runner; the text names the failure, never the keys.
            raise StorageUnavailable(f"storing {key} in S3 failed: {type(exc).__name__}") from exc
        return StoredFile(url=self.url_for(object_key), size=size)

    async def delete(self, key: str) -> None:
        """Delete the object: its plain URL then answers 403/404, and so does every presigned one.

        Deleted, not made private: a presigned URL already handed out keeps working on any object
        that still exists, whatever its ACL, for up to its expiry (7 days by default).
        """
        object_key = self.object_key(key)
        try:
            await asyncio.to_thread(self._client.delete_object, Bucket=self.location.bucket, Key=object_key)
        except (Boto3Error, BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"deleting {key} in S3 failed: {type(exc).__name__}") from exc

    async def check_writable(self) -> None:
        """Put and delete a tiny probe object; the answer is kept PROBE_SECONDS (a PUT costs money)."""
        now = time.monotonic()
        if self._probed is None or now - self._probed[0] > PROBE_SECONDS:
            problem: StorageUnavailable | None = None
            try:
                await asyncio.to_thread(self._probe, self.location.prefix + PROBE_KEY)
            except (Boto3Error, BotoCoreError, ClientError) as exc:
                problem = StorageUnavailable(f"media storage cannot be written: bucket {self.location.bucket!r} "
                                             f"({type(exc).__name__})", retry_after=5)
            self._probed = (now, problem)
        if self._probed[1] is not None:
            raise self._probed[1]

    def _probe(self, object_key: str) -> None:
        self._client.put_object(Bucket=self.location.bucket, Key=object_key, Body=b"ok")
        self._client.delete_object(Bucket=self.location.bucket, Key=object_key)

    def _upload(self, source: Path, object_key: str, content_type: str) -> int:
        size = source.stat().st_size
        self._client.upload_file(str(source), self.location.bucket, object_key,
                                 ExtraArgs={"ContentType": content_type}, Config=self._transfer)
        source.unlink(missing_ok=True)
        return size
