"""Streaming a vendor's result file to local disk, with size, type and time limits."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from kensa_gql.domain.errors import ContentRejected, ProviderUnavailable

ACCEPTED_TYPES = ("video/", "application/octet-stream", "binary/octet-stream")
MAX_REDIRECTS = 5


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


async def download(client: httpx.AsyncClient, url: str, *, headers: dict[str, str], max_bytes: int,
                   work_dir: Path, timeout: float = 300.0) -> Path:  # noqa: ASYNC109 - per-request httpx timeout
    """Fetch ``url`` into a temporary file; transient failures are ProviderUnavailable.

    Redirects are followed by hand: the vendor's headers (its API key) go only to the origin they
    were given for, never to a storage host the file redirects to.
    """
    work_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - one cheap syscall
    fd, name = tempfile.mkstemp(dir=work_dir, suffix=".download")
    path = Path(name)
    origin = _origin(url)
    try:
        with os.fdopen(fd, "wb") as out:
            for _ in range(MAX_REDIRECTS + 1):
                sent = headers if _origin(url) == origin else {}
                async with client.stream("GET", url, headers=sent, timeout=timeout,
                                         follow_redirects=False) as response:
                    if response.is_redirect and response.headers.get("location"):
                        url = urljoin(url, response.headers["location"])
                        if urlsplit(url).scheme not in ("http", "https"):
                            raise ContentRejected("result download redirected to a non-HTTP URL")
                        continue
                    _check(response, max_bytes)
                    size = 0
                    async for chunk in response.aiter_bytes(1 << 16):
                        size += len(chunk)
                        if size > max_bytes:
                            raise ContentRejected(f"result is larger than {max_bytes} bytes")
                        out.write(chunk)
                    return path
            raise ContentRejected("result download redirected too many times")
    except httpx.HTTPError as exc:
        path.unlink(missing_ok=True)  # noqa: ASYNC240
        raise ProviderUnavailable(f"result download failed: {type(exc).__name__}") from exc
    except BaseException:
        path.unlink(missing_ok=True)  # noqa: ASYNC240
        raise


def _check(response: httpx.Response, max_bytes: int) -> None:
    if response.status_code in (408, 429) or response.status_code >= 500:
        raise ProviderUnavailable(f"result download answered HTTP {response.status_code}")
    if response.status_code != 200:
        raise ContentRejected(f"result download answered HTTP {response.status_code} "
                              "(the link may have expired)")
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not kind.startswith(ACCEPTED_TYPES):
        raise ContentRejected(f"result is not a video (content type {kind or 'missing'})")
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ContentRejected(f"result is larger than {max_bytes} bytes")
