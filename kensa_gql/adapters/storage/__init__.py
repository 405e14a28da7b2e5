"""Where finished media lives, chosen by URL scheme (``file://``; ``s3://`` later)."""

from __future__ import annotations

from pathlib import Path

from kensa_gql.adapters.storage.local import LocalStorage
from kensa_gql.domain.ports import Storage


def storage_from_url(url: str, *, media_dir: Path, public_url: str) -> Storage:
    if not url or url.startswith("file://"):
        root = Path(url.removeprefix("file://")) if url else media_dir
        return LocalStorage(root, base_url=f"{public_url}/media")
    raise ValueError(f"KENSA_STORAGE_URL: unsupported scheme in {url!r} (use file://)")
