"""S3 storage against moto's S3 server on a loopback port: real HTTP uploads and downloads."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from moto.server import ThreadedMotoServer

from kensa_gql.adapters.storage import storage_from_url
from kensa_gql.adapters.storage.local import LocalStorage
from kensa_gql.adapters.storage.s3 import S3Storage, make_client, parse_s3_url
from kensa_gql.app import create_app
from kensa_gql.domain.errors import StorageUnavailable
from kensa_gql.settings import Settings, SettingsError
from tests.conftest import free_port
from tests.support import wait_for_status


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": "test-secret-key"}


@pytest.fixture
def bucket(aws_env: dict[str, str]) -> str:
    name = f"kensa-{secrets.token_hex(4)}"
    make_client(aws_env).create_bucket(Bucket=name,
                                       CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return name


def s3_storage(url: str, env: dict[str, str], tmp_path: Path, **kwargs: Any) -> S3Storage:
    storage = storage_from_url(url, media_dir=tmp_path / "media", public_url="http://gw.test", environ=env,
                               **kwargs)
    assert isinstance(storage, S3Storage)
    return storage


def a_file(tmp_path: Path, size: int, name: str = "video.mp4") -> Path:
    path = tmp_path / name
    path.write_bytes(secrets.token_bytes(size))
    return path


def object_keys(env: dict[str, str], bucket: str) -> list[str]:
    listing = make_client(env).list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


# -- URLs -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "bucket", "prefix"), [
    ("s3://media", "media", ""),
    ("s3://media/", "media", ""),
    ("s3://media/kensa", "media", "kensa/"),
    ("s3://media//kensa//videos/", "media", "kensa/videos/"),
    ("s3://my.bucket-01/a/b", "my.bucket-01", "a/b/"),
])
def test_s3_urls_give_a_bucket_and_a_normalised_prefix(url: str, bucket: str, prefix: str) -> None:
    location = parse_s3_url(url)
    assert (location.bucket, location.prefix) == (bucket, prefix)


@pytest.mark.parametrize(("url", "message"), [
    ("s3://", "needs a bucket"),
    ("s3:///prefix", "needs a bucket"),
    ("s3://Media_Bucket/x", "not a valid S3 bucket name"),
    ("s3://ab/x", "not a valid S3 bucket name"),
    ("s3://192.168.0.1/x", "not a valid S3 bucket name"),
    ("s3://media/a/../b", "must not contain"),
    ("s3://media/x?versioning=1", "no query"),
    ("s3://media:9000/x", "AWS_* variables"),
    ("ftp://media/x", "unsupported scheme 'ftp'"),
    ("media/videos", "unsupported scheme"),
    ("file://", "needs a directory"),
])
def test_a_bad_storage_url_is_a_clear_settings_error(url: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="KENSA_STORAGE_URL") as caught:
        storage_from_url(url, media_dir=tmp_path, public_url="http://gw.test", environ={})
    assert message in str(caught.value)


def test_credentials_in_the_storage_url_are_refused_without_being_repeated(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        storage_from_url("s3://AKIAEXAMPLE:very-secret@media/x", media_dir=tmp_path, public_url="http://gw.test",
                         environ={})
    assert "very-secret" not in str(caught.value) and "AKIAEXAMPLE" not in str(caught.value)


def test_an_empty_or_file_url_is_the_local_media_folder(tmp_path: Path) -> None:
    default = storage_from_url("", media_dir=tmp_path / "media", public_url="http://gw.test")
    elsewhere = storage_from_url(f"file://{tmp_path}/other", media_dir=tmp_path / "media",
                                 public_url="http://gw.test")
    assert isinstance(default, LocalStorage) and default.root == (tmp_path / "media").resolve()
    assert isinstance(elsewhere, LocalStorage) and elsewhere.root == (tmp_path / "other").resolve()


def test_create_app_stops_on_a_bad_storage_url(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="KENSA_STORAGE_URL"):
        create_app(settings.model_copy(update={"storage_url": "s3://"}))


# -- uploads --------------------------------------------------------------------------------------------

async def test_an_upload_is_served_back_over_a_presigned_url(aws_env: dict[str, str], bucket: str,
                                                             tmp_path: Path) -> None:
    storage = s3_storage(f"s3://{bucket}/gateway/media", aws_env, tmp_path,
                         s3_url_expiry_seconds=3 * 24 * 3600)
    source = a_file(tmp_path, 300_000)
    expected = source.read_bytes()

    stored = await storage.put("videos/abc.mp4", source, "video/mp4")

    assert stored.size == 300_000
    assert not source.exists()  # consumed, like the local store's move
    assert object_keys(aws_env, bucket) == ["gateway/media/videos/abc.mp4"]
    query = parse_qs(urlsplit(stored.url).query)
    assert query["X-Amz-Expires"] == [str(3 * 24 * 3600)] and "X-Amz-Signature" in query
    assert "test-secret-key" not in stored.url
    async with httpx.AsyncClient() as http:
        response = await http.get(stored.url)
        unsigned = await http.get(stored.url.split("?")[0])
    assert unsigned.status_code == 403  # the bucket is private: only the signature lets clients in
    assert response.status_code == 200
    assert response.content == expected
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == stored.size


async def test_a_deleted_object_is_gone_from_its_presigned_url(aws_env: dict[str, str], bucket: str,
                                                               tmp_path: Path) -> None:
    storage = s3_storage(f"s3://{bucket}/gateway/media", aws_env, tmp_path)
    stored = await storage.put("videos/abc.mp4", a_file(tmp_path, 1000), "video/mp4")
    async with httpx.AsyncClient() as http:
        assert (await http.get(stored.url)).status_code == 200
        # when the video's media is deleted (twice: the second finds nothing, which is fine)
        await storage.delete("videos/abc.mp4")
        await storage.delete("videos/abc.mp4")
        # then the URL already handed out no longer serves it
        assert (await http.get(stored.url)).status_code == 404
    assert object_keys(aws_env, bucket) == []


async def test_a_failed_delete_is_a_storage_error(aws_env: dict[str, str], tmp_path: Path) -> None:
    storage = s3_storage("s3://no-such-bucket-here/p", aws_env, tmp_path)
    with pytest.raises(StorageUnavailable, match=r"deleting videos/abc\.mp4 in S3 failed"):
        await storage.delete("videos/abc.mp4")


async def test_without_a_prefix_keys_sit_at_the_bucket_root(aws_env: dict[str, str], bucket: str,
                                                           tmp_path: Path) -> None:
    storage = s3_storage(f"s3://{bucket}", aws_env, tmp_path)
    await storage.put("thumbnails/abc.jpg", a_file(tmp_path, 1000, "t.jpg"), "image/jpeg")
    assert object_keys(aws_env, bucket) == ["thumbnails/abc.jpg"]


async def test_a_public_base_url_gives_plain_urls(aws_env: dict[str, str], bucket: str, tmp_path: Path,
                                                  moto_endpoint: str) -> None:
    # given a bucket whose policy lets anyone read (or a CDN in front of it)
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                             "Resource": f"arn:aws:s3:::{bucket}/*"}]}
    make_client(aws_env).put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    storage = s3_storage(f"s3://{bucket}/p", aws_env, tmp_path, s3_public_url=f"{moto_endpoint}/{bucket}/")
    source = a_file(tmp_path, 2048, "t.jpg")
    expected = source.read_bytes()

    stored = await storage.put("thumbnails/x y.jpg", source, "image/jpeg")

    assert stored.url == f"{moto_endpoint}/{bucket}/p/thumbnails/x%20y.jpg"
    async with httpx.AsyncClient() as http:
        response = await http.get(stored.url)
    assert response.content == expected and response.headers["content-type"] == "image/jpeg"


async def test_large_files_go_up_as_a_streamed_multipart_upload(aws_env: dict[str, str], bucket: str,
                                                                tmp_path: Path) -> None:
    location = parse_s3_url(f"s3://{bucket}/big")
    storage = S3Storage(location, client=make_client(aws_env), part_size=5 * 1024 * 1024)
    source = a_file(tmp_path, 11 * 1024 * 1024)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()

    stored = await storage.put("videos/big.mp4", source, "video/mp4")

    head = make_client(aws_env).head_object(Bucket=bucket, Key="big/videos/big.mp4")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 1 MiB
    assert head["ContentType"] == "video/mp4" and head["ContentLength"] == stored.size
    async with httpx.AsyncClient() as http:
        response = await http.get(stored.url)
    assert hashlib.sha256(response.content).hexdigest() == digest


@pytest.mark.parametrize("key", ["../escape.mp4", "/abs.mp4", "videos//x.mp4", "", "videos/./x.mp4"])
async def test_keys_that_are_not_plain_relative_paths_are_a_bug(key: str, aws_env: dict[str, str],
                                                                tmp_path: Path) -> None:
    storage = s3_storage("s3://some-bucket/p", aws_env, tmp_path)
    with pytest.raises(ValueError, match="plain relative path"):
        await storage.put(key, a_file(tmp_path, 10), "video/mp4")


async def test_a_failed_upload_is_retryable_and_keeps_the_source(aws_env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    storage = s3_storage("s3://no-such-bucket-here/p", aws_env, tmp_path)
    source = a_file(tmp_path, 100)
    with pytest.raises(StorageUnavailable) as caught:
        await storage.put("videos/a.mp4", source, "video/mp4")
    assert source.exists()
    assert "test-secret-key" not in caught.value.message


async def test_a_deleted_key_is_gone_and_deleting_a_missing_one_is_fine(aws_env: dict[str, str], bucket: str,
                                                                       tmp_path: Path) -> None:
    storage = s3_storage(f"s3://{bucket}/p", aws_env, tmp_path)
    await storage.put("videos/a.mp4", a_file(tmp_path, 10), "video/mp4")
    await storage.delete("videos/a.mp4")
    await storage.delete("thumbnails/never-stored.jpg")
    assert object_keys(aws_env, bucket) == []


async def test_readiness_writes_a_probe_and_names_a_bucket_it_cannot_write(aws_env: dict[str, str], bucket: str,
                                                                         tmp_path: Path) -> None:
    await s3_storage(f"s3://{bucket}/p", aws_env, tmp_path).check_writable()
    assert object_keys(aws_env, bucket) == []  # the probe is removed again
    missing = s3_storage("s3://no-such-bucket-here/p", aws_env, tmp_path)
    with pytest.raises(StorageUnavailable, match="'no-such-bucket-here'") as caught:
        await missing.check_writable()
    assert "test-secret-key" not in caught.value.message


# -- the start-up check -----------------------------------------------------------------------------------

async def test_the_start_up_check_accepts_an_existing_bucket(aws_env: dict[str, str], bucket: str,
                                                            tmp_path: Path) -> None:
    await s3_storage(f"s3://{bucket}/p", aws_env, tmp_path).check()


async def test_the_start_up_check_names_a_missing_bucket(aws_env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="bucket 'missing-bucket' does not exist"):
        await s3_storage("s3://missing-bucket/p", aws_env, tmp_path).check()


async def test_the_start_up_check_names_an_unreachable_endpoint(aws_env: dict[str, str],
                                                                tmp_path: Path) -> None:
    env = {**aws_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    with pytest.raises(SettingsError, match="cannot reach the S3 endpoint") as caught:
        await s3_storage("s3://media/p", env, tmp_path).check()
    assert "test-secret-key" not in str(caught.value)


def test_the_s3_specific_endpoint_variable_wins(aws_env: dict[str, str], moto_endpoint: str) -> None:
    client = make_client({**aws_env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                          "AWS_ENDPOINT_URL_S3": moto_endpoint, "AWS_REGION": "",
                          "AWS_DEFAULT_REGION": "ap-southeast-1"})
    assert client.meta.endpoint_url == moto_endpoint
    assert client.meta.region_name == "ap-southeast-1"


# -- through the gateway ----------------------------------------------------------------------------------

@pytest.fixture
def s3_settings(settings: Settings, bucket: str, aws_env: dict[str, str],
                monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in aws_env.items():
        monkeypatch.setenv(name, value)
    return settings.model_copy(update={"storage_url": f"s3://{bucket}/gw"})


async def test_the_app_refuses_to_start_when_the_bucket_is_missing(s3_settings: Settings) -> None:
    app = create_app(s3_settings.model_copy(update={"storage_url": "s3://not-there/gw"}))
    with pytest.raises(SettingsError, match="does not exist"):
        async with app.router.lifespan_context(app):
            pass


async def test_an_api_only_process_does_not_need_the_bucket(s3_settings: Settings) -> None:
    app = create_app(s3_settings.model_copy(update={"storage_url": "s3://not-there/gw"}), run_worker=False)
    async with app.router.lifespan_context(app):
        assert app.state.runner is None


async def test_a_generated_video_is_stored_in_s3_and_served_from_there(
        s3_settings: Settings, bucket: str, aws_env: dict[str, str], make_user: Any) -> None:
    from tests.conftest import LiveServer

    server = LiveServer(s3_settings)
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            user = await make_user(credits=10)
            body = {"prompt": "a lighthouse at dusk", "model": "sora-2", "duration": 4, "aspectRatio": "16:9"}
            r = await client.post("/api/v1/video/generate", json=body, headers=user.headers)
            assert r.status_code == 200, r.text
            video = await wait_for_status(client, user, r.json()["data"]["uuid"], {"COMPLETED", "FAILED"})
            assert video["status"] == "COMPLETED", video
            media = await client.get(video["videoUrl"])
            thumb = await client.get(video["thumbnailUrl"])
    finally:
        server.stop()
    assert media.status_code == 200 and media.content[4:8] == b"ftyp"
    assert len(media.content) == video["fileSize"] and media.headers["content-type"] == "video/mp4"
    assert thumb.content[:3] == b"\xff\xd8\xff" and thumb.headers["content-type"] == "image/jpeg"
    uuid = video["uuid"]
    assert object_keys(aws_env, bucket) == [f"gw/thumbnails/{uuid}.jpg", f"gw/videos/{uuid}.mp4"]
    assert video["videoUrl"].startswith(f"{aws_env['AWS_ENDPOINT_URL']}/{bucket}/gw/videos/{uuid}.mp4?")
