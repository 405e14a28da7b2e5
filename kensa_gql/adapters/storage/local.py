"""Files under the media directory, served by the gateway itself at ``/media``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from kensa_gql.domain.errors import StorageUnavailable
from kensa_gql.domain.ports import StoredFile
from kensa_gql.domain.videos import MEDIA_FOLDERS as FOLDERS
from kensa_gql.settings import SettingsError


def writable_directory(path: Path, variable: str) -> None:
    """Create ``path`` if missing and prove it takes a file; SettingsError naming ``variable`` if not.

    A real write, not os.access: that answers yes to root on a read-only mount's directories.
    """
    if path.exists() and not path.is_dir():
        raise SettingsError(f"{variable}: {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SettingsError(f"{variable}: {path} is not a writable directory ({reason})") from None


class LocalStorage:
    def __init__(self, root: Path, *, base_url: str) -> None:
        self.root = root.resolve()
        self.base_url = base_url.rstrip("/")

    async def check(self) -> None:
        """Fail start-up when the directory cannot be created or written."""
        def probe() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise PermissionError(self.root)

        try:
            await asyncio.to_thread(probe)
        except OSError as exc:
            raise SettingsError(f"KENSA_STORAGE_URL: cannot write to {self.root} "
                                f"({type(exc).__name__})") from None

    async def check_writable(self) -> None:
        """Write and remove a probe file in each folder: permission bits alone say nothing to root,
        or about a read-only mount or a full disk."""
        for folder in FOLDERS:
            try:
                await asyncio.to_thread(self._probe, self.root / folder)
            except OSError as exc:
                raise StorageUnavailable(f"media storage cannot be written: {folder}/ "
                                         f"({type(exc).__name__})", retry_after=5) from exc

    @staticmethod
    def _probe(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".ready-{secrets.token_hex(4)}.part"
        try:
            probe.write_bytes(b"ok")
        finally:
            probe.unlink(missing_ok=True)

    def _target(self, key: str) -> Path:
        target = (self.root / key).resolve()
        if self.root not in target.parents:
            raise ValueError(f"storage key escapes the media directory: {key!r}")
        return target

    async def put(self, key: str, source: Path, content_type: str) -> StoredFile:
        target = self._target(key)
        try:
            size = await asyncio.to_thread(self._place, source, target)
        except OSError as exc:
            # Read-only, full, or not a directory: retryable for the runner; the message names
            # the key, never the host's paths (it can end up in a video's errorMessage).
            raise StorageUnavailable(f"storing {key} failed: {type(exc).__name__}") from exc
        return StoredFile(url=f"{self.base_url}/{key}", size=size)

    async def delete(self, key: str) -> None:
        """Remove the file at ``key`` (and any half-placed copy); a missing one is fine."""
        target = self._target(key)
        try:
            await asyncio.to_thread(self._remove, target)
        except NotADirectoryError:
            return  # a file where its folder should be: the key cannot be there
        except OSError as exc:
            raise StorageUnavailable(f"deleting {key} failed: {type(exc).__name__}") from exc

    @staticmethod
    def _remove(target: Path) -> None:
        target.unlink(missing_ok=True)
        target.with_name(target.name + ".part").unlink(missing_ok=True)

    @staticmethod
    def _place(source: Path, target: Path) -> int:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        moved = False
        try:
            try:
                os.replace(source, partial)
                moved = True
            except OSError:  # another filesystem: copy instead of rename
                shutil.copyfile(source, partial)
            os.replace(partial, target)
        except BaseException:
            # No half file beside the published ones, and the source stays for the next try.
            with contextlib.suppress(OSError):
                if moved:
                    os.replace(partial, source)
                partial.unlink(missing_ok=True)
            raise
        if not moved:
            source.unlink(missing_ok=True)
        return target.stat().st_size
