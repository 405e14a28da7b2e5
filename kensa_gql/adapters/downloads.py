"""Streaming a vendor's result file to local disk, with size, type and time limits."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import httpx

from kensa_gql.domain.errors import ContentRejected, ProviderUnavailable

ACCEPTED_TYPES = ("video/", "application/octet-stream", "binary/octet-stream")


async def download(client: httpx.AsyncClient, url: str, *, headers: dict[str, str], max_bytes: int,
                   work_dir: Path, timeout: float = 300.0) -> Path:
    """Fetch ``url`` into a temporary file; transient failures are ProviderUnavailable."""
    work_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=work_dir, suffix=".download")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            async with client.stream("GET", url, headers=headers, timeout=timeout,
                                     follow_redirects=True) as response:
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
                size = 0
                async for chunk in response.aiter_bytes(1 << 16):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ContentRejected(f"result is larger than {max_bytes} bytes")
                    out.write(chunk)
        return path
    except httpx.HTTPError as exc:
        path.unlink(missing_ok=True)
        raise ProviderUnavailable(f"result download failed: {type(exc).__name__}") from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
