"""Where finished media lives, chosen by URL scheme: ``file://`` (default) or ``s3://bucket/prefix``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from kensa_gql.adapters.storage.local import LocalStorage
from kensa_gql.domain.ports import Storage
from kensa_gql.settings import SettingsError

DEFAULT_URL_EXPIRY_SECONDS = 7 * 24 * 3600


def storage_from_url(url: str, *, media_dir: Path, public_url: str, s3_public_url: str = "",
                     s3_url_expiry_seconds: int = DEFAULT_URL_EXPIRY_SECONDS,
                     s3_addressing_style: str = "auto", environ: Mapping[str, str] | None = None) -> Storage:
    """Build the store named by ``KENSA_STORAGE_URL``; SettingsError names the variable when it is wrong.

    Nothing is contacted here; ``await storage.check()`` at start-up does that.
    """
    if not url or url.startswith("file://"):
        root = Path(url.removeprefix("file://")) if url else media_dir
        if url and not url.removeprefix("file://"):
            raise SettingsError("KENSA_STORAGE_URL: file:// needs a directory (file:///srv/media)")
        return LocalStorage(root, base_url=f"{public_url}/media")
    if url.startswith("s3://"):
        from kensa_gql.adapters.storage.s3 import S3Storage, make_client, parse_s3_url

        location = parse_s3_url(url)
        client = make_client(os.environ if environ is None else environ, addressing_style=s3_addressing_style)
        return S3Storage(location, client=client, public_base=s3_public_url,
                         url_expiry_seconds=s3_url_expiry_seconds)
    scheme = url.split(":", 1)[0] if ":" in url else url[:16]
    raise SettingsError(f"KENSA_STORAGE_URL: unsupported scheme {scheme!r} "
                        "(use file:///path or s3://bucket/prefix)")
