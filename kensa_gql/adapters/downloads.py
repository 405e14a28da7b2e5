"""Streaming a vendor's result file to local disk, with size, type and time limits.

Result URLs come from a configured vendor's authenticated API, so unlike a user's start image
(``fetcher``) they may point anywhere the operator's network reaches (tests run the vendor
emulators on loopback). Everything else is as strict: one overall deadline besides the per-read
timeouts (a server dripping a byte a second must not hold a worker forever), a size limit checked
against Content-Length and while streaming, a video content type, and no partial file left behind.
Redirects are followed by hand so the vendor's credentials never travel to another origin.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin

import httpx

from kensa_gql.domain.errors import ContentRejected, ProviderUnavailable, StorageUnavailable

ACCEPTED_TYPES = ("video/", "application/octet-stream", "binary/octet-stream")
MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


async def download(client: httpx.AsyncClient, url: str, *, headers: dict[str, str], max_bytes: int,
                   work_dir: Path, timeout: float = 60.0,  # noqa: ASYNC109 - per operation
                   deadline: float = 1800.0) -> Path:
    """Fetch ``url`` into a temporary file under ``work_dir`` and return its path.

    ``timeout`` bounds each connect/read/write, ``deadline`` the whole transfer. Failures that a
    retry may cure (network, timeouts, 408/429/5xx) are ProviderUnavailable; the rest (an expired
    or forbidden link, too large, not a video) are ContentRejected; a work directory that cannot
    be written is StorageUnavailable.
    """
    try:
        work_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - local and instant
        fd, name = tempfile.mkstemp(dir=work_dir, suffix=".download")
    except OSError as exc:
        raise StorageUnavailable(f"the work directory cannot be written: {type(exc).__name__}") from exc
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            async with asyncio.timeout(deadline):
                await _transfer(client, url, headers, max_bytes, timeout, out)
        return path
    except BaseException as exc:
        path.unlink(missing_ok=True)  # noqa: ASYNC240 - never leave a partial file behind
        error = _domain_error(exc, deadline)
        if error is None:
            raise
        raise error from exc


def _domain_error(exc: BaseException, deadline: float) -> Exception | None:
    if isinstance(exc, TimeoutError):  # only asyncio.timeout raises it here; httpx has its own
        return ProviderUnavailable(f"result download did not finish within {deadline:g} s")
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return ContentRejected("the provider's result URL is not a valid http(s) URL")
    if isinstance(exc, httpx.HTTPError):
        return ProviderUnavailable(f"result download failed: {type(exc).__name__}")
    if isinstance(exc, OSError):  # writing the file: the work directory's disk is full or read-only
        return StorageUnavailable(f"the work directory cannot be written: {type(exc).__name__}")
    return None


async def _transfer(client: httpx.AsyncClient, url: str, headers: dict[str, str], max_bytes: int,
                    timeout: float, out: BinaryIO) -> None:  # noqa: ASYNC109
    origin = httpx.URL(url).copy_with(path="/", query=None, fragment=None)
    for _hop in range(MAX_REDIRECTS + 1):
        target = httpx.URL(url)
        if target.scheme not in ("http", "https") or not target.host:
            raise ContentRejected("the provider's result URL is not a valid http(s) URL")
        # The vendor's headers (often its API key) go only to the origin it named.
        same_origin = target.copy_with(path="/", query=None, fragment=None) == origin
        async with client.stream("GET", target, headers=headers if same_origin else {}, timeout=timeout,
                                 follow_redirects=False) as response:
            status = response.status_code
            if status in REDIRECT_STATUSES and response.headers.get("location"):
                url = urljoin(str(target), response.headers["location"])
                continue
            if status in (408, 425, 429) or status >= 500:
                raise ProviderUnavailable(f"result download answered HTTP {status}")
            if status != 200:
                raise ContentRejected(f"result download answered HTTP {status} (the link may have expired)")
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if not kind.startswith(ACCEPTED_TYPES):
                raise ContentRejected(f"result is not a video (content type {kind or 'missing'})")
            declared = response.headers.get("content-length", "").strip()
            if declared.isdigit() and int(declared) > max_bytes:
                raise ContentRejected(f"result is larger than {max_bytes} bytes")
            size = 0
            async for chunk in response.aiter_bytes(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise ContentRejected(f"result is larger than {max_bytes} bytes")
                out.write(chunk)
            if size == 0:
                raise ContentRejected("result is empty")
            return
    raise ContentRejected(f"result download redirected more than {MAX_REDIRECTS} times")
