"""Thumbnails are real JPEGs cut from real videos, and non-videos are refused with ThumbnailError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from kensa_gql.adapters.providers.render import render_video
from kensa_gql.adapters.thumbnails import ThumbnailError, make_thumbnail

FPS = 12


@pytest.fixture(scope="module")
def landscape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "landscape.mp4"
    render_video(str(path), "a lighthouse in a storm", 3, "720p", "16:9", fps=FPS)
    return path


@pytest.fixture(scope="module")
def portrait(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "portrait.mp4"
    render_video(str(path), "a cat on a windowsill", 1, "480p", "9:16", fps=FPS)
    return path


def open_jpeg(path: Path) -> Image.Image:
    image = Image.open(path)
    assert image.format == "JPEG"
    image.load()
    return image


@pytest.mark.parametrize(
    ("video", "max_width", "expected"),
    [
        ("landscape", 640, (640, 360)),
        ("landscape", 320, (320, 180)),
        ("portrait", 240, (240, 427)),
        ("portrait", 640, (480, 854)),  # never upscaled
    ],
)
def test_thumbnail_is_a_jpeg_scaled_to_max_width_keeping_aspect_ratio(
    request: pytest.FixtureRequest, tmp_path: Path, video: str, max_width: int, expected: tuple[int, int]
) -> None:
    source: Path = request.getfixturevalue(video)
    out = tmp_path / "thumb.jpg"

    size = make_thumbnail(str(source), str(out), max_width=max_width)

    assert size == expected
    image = open_jpeg(out)
    assert image.size == expected
    assert image.width <= max_width
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        assert abs(image.height - image.width * stream.height / stream.width) <= 1
    assert [p.name for p in tmp_path.iterdir()] == ["thumb.jpg"]


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.9, 1.0])
def test_thumbnail_shows_the_frame_nearest_the_requested_fraction(
    landscape: Path, tmp_path: Path, fraction: float
) -> None:
    out = tmp_path / "thumb.jpg"

    width, height = make_thumbnail(str(landscape), str(out), max_width=320, at_fraction=fraction)

    thumb = np.asarray(open_jpeg(out).convert("RGB"), dtype=np.int16)
    with av.open(str(landscape)) as container:
        frames = [
            frame.to_ndarray(width=width, height=height, format="rgb24").astype(np.int16)
            for frame in container.decode(video=0)
        ]
    distances = [np.abs(thumb - frame).mean() for frame in frames]
    expected_index = min(round(fraction * len(frames)), len(frames) - 1)
    assert abs(int(np.argmin(distances)) - expected_index) <= 1


def test_thumbnail_replaces_an_existing_file(landscape: Path, tmp_path: Path) -> None:
    out = tmp_path / "thumb.jpg"
    out.write_bytes(b"old")

    make_thumbnail(str(landscape), str(out))

    open_jpeg(out)
    assert [p.name for p in tmp_path.iterdir()] == ["thumb.jpg"]


def _html(path: Path) -> None:
    path.write_text("<!doctype html><html><body><h1>403 Forbidden</h1></body></html>\n")


def _png(path: Path) -> None:
    Image.new("RGB", (64, 64), "red").save(path, format="PNG")


def _jpeg(path: Path) -> None:
    Image.new("RGB", (64, 64), "blue").save(path, format="JPEG")


def _noise(path: Path) -> None:
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 20_000, dtype=np.uint8).tobytes())


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("write", [_html, _png, _jpeg, _noise, _empty], ids=lambda f: f.__name__[1:])
def test_non_video_files_raise_thumbnail_error(tmp_path: Path, write: Callable[[Path], None]) -> None:
    source = tmp_path / "download.mp4"
    write(source)
    out = tmp_path / "thumb.jpg"

    with pytest.raises(ThumbnailError):
        make_thumbnail(str(source), str(out))

    assert not out.exists()
    assert not (tmp_path / "thumb.jpg.part").exists()


def test_missing_video_is_not_mistaken_for_a_bogus_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        make_thumbnail(str(tmp_path / "absent.mp4"), str(tmp_path / "thumb.jpg"))
