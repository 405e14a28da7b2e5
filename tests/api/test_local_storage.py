"""``KENSA_STORAGE_URL=file://...``: the gateway stores there and serves it at /media."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from kensa_gql.adapters.storage import storage_from_url
from kensa_gql.app import create_app
from kensa_gql.domain.errors import StorageUnavailable
from kensa_gql.settings import Settings, SettingsError
from tests.conftest import LiveServer
from tests.support import wait_for_status

GENERATE = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}


async def test_a_file_url_outside_the_media_dir_is_stored_and_served(settings: Settings, tmp_path: Path,
                                                                     make_user: Any) -> None:
    elsewhere = tmp_path / "elsewhere"
    server = LiveServer(settings.model_copy(update={"storage_url": f"file://{elsewhere}"}))
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            user = await make_user(credits=10)
            r = await client.post("/api/v1/video/generate", json=GENERATE, headers=user.headers)
            video = await wait_for_status(client, user, r.json()["data"]["uuid"], {"COMPLETED", "FAILED"})
            assert video["status"] == "COMPLETED"
            media = await client.get(video["videoUrl"])
    finally:
        server.stop()
    assert media.status_code == 200 and media.content[4:8] == b"ftyp"
    assert (elsewhere / "videos" / f"{video['uuid']}.mp4").read_bytes() == media.content


async def test_an_unusable_storage_directory_stops_start_up(settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    app = create_app(settings.model_copy(update={"storage_url": f"file://{blocker}/media"}))
    with pytest.raises(SettingsError, match="KENSA_STORAGE_URL: cannot write"):
        async with app.router.lifespan_context(app):
            pass


async def test_the_local_check_creates_a_missing_directory(tmp_path: Path) -> None:
    storage = storage_from_url(f"file://{tmp_path}/new/media", media_dir=tmp_path, public_url="http://gw.test")
    await storage.check()
    assert (tmp_path / "new" / "media").is_dir()


async def test_work_in_progress_files_are_not_served(client: httpx.AsyncClient, live_server: Any) -> None:
    work = live_server.app.state.settings.media_dir.resolve() / ".work"
    work.mkdir(parents=True, exist_ok=True)
    (work / "secret.mp4").write_bytes(b"not yet")
    assert (await client.get("/media/.work/secret.mp4")).status_code == 404
    assert (await client.get("/media/videos/../.work/secret.mp4")).status_code == 404


async def test_a_put_that_cannot_be_written_is_retryable_keeps_the_source_and_leaves_no_part(tmp_path: Path) -> None:
    # a regular file where the folder should be fails the write for any user, root included
    root = tmp_path / "media"
    root.mkdir()
    (root / "videos").write_text("not a directory")
    storage = storage_from_url(f"file://{root}", media_dir=tmp_path, public_url="http://gw.test")
    source = tmp_path / "work.mp4"
    source.write_bytes(b"video")
    with pytest.raises(StorageUnavailable, match=r"^storing videos/a\.mp4 failed: ") as caught:
        await storage.put("videos/a.mp4", source, "video/mp4")
    assert str(tmp_path) not in caught.value.message
    assert source.read_bytes() == b"video"
    with pytest.raises(StorageUnavailable, match=r"videos/"):
        await storage.check_writable()
    await storage.delete("videos/a.mp4")  # nothing there, nothing to do
    (root / "videos").unlink()
    await storage.check_writable()
    stored = await storage.put("videos/a.mp4", source, "video/mp4")
    assert stored.size == 5 and not source.exists()
    assert sorted(p.name for p in root.rglob("*")) == ["a.mp4", "thumbnails", "videos"]
