"""The embedded renderer writes real, playable H.264 MP4 files; checked by decoding them with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from kensa_gql.adapters.providers.render import RenderedInfo, frame_size, render_video

PROMPT = "A red fox runs through a snowy birch forest at dawn, cinematic lighting, slow dolly shot"


def decode_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "expected"),
    [
        ("720p", "16:9", (1280, 720)),
        ("720p", "9:16", (720, 1280)),
        ("1080p", "1:1", (1080, 1080)),
        ("720p", "4:3", (960, 720)),
        ("720p", "3:4", (720, 960)),
        ("480p", "21:9", (1120, 480)),
        ("480p", "16:9", (854, 480)),  # 853.3 rounds to the nearest even width
        ("1080p", "16:9", (1920, 1080)),
        ("1080p", "9:16", (1080, 1920)),
    ],
)
def test_frame_size_uses_resolution_as_short_side(
    resolution: str, aspect_ratio: str, expected: tuple[int, int]
) -> None:
    assert frame_size(resolution, aspect_ratio) == expected


@pytest.mark.parametrize(("resolution", "aspect_ratio"), [("4k", "16:9"), ("720p", "2:1")])
def test_unknown_resolution_or_aspect_ratio_is_rejected(
    tmp_path: Path, resolution: str, aspect_ratio: str
) -> None:
    out = tmp_path / "video.mp4"
    with pytest.raises(ValueError, match="unsupported"):
        render_video(str(out), PROMPT, 1, resolution, aspect_ratio)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "duration", "size"),
    [
        ("480p", "16:9", 1, (854, 480)),
        ("480p", "9:16", 1, (480, 854)),
        ("480p", "21:9", 1, (1120, 480)),
        ("480p", "1:1", 1, (480, 480)),
        ("720p", "4:3", 1, (960, 720)),
        ("720p", "3:4", 2, (720, 960)),
        ("1080p", "16:9", 4, (1920, 1080)),
    ],
)
def test_render_writes_h264_mp4_with_requested_size_and_duration(
    tmp_path: Path, resolution: str, aspect_ratio: str, duration: int, size: tuple[int, int]
) -> None:
    out = tmp_path / "video.mp4"

    info = render_video(str(out), PROMPT, duration, resolution, aspect_ratio, fps=12)

    width, height = size
    assert info == RenderedInfo(width, height, duration * 12, float(duration), out.stat().st_size)
    with av.open(str(out)) as container:
        assert "mp4" in container.format.name.split(",")
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == size
        assert stream.average_rate == 12
        assert stream.duration is not None and stream.time_base is not None
        assert abs(float(stream.duration * stream.time_base) - duration) <= 1 / 12
        frames = list(container.decode(stream))
    assert len(frames) == duration * 12
    assert frames[-1].time is not None
    assert abs(frames[-1].time + 1 / 12 - duration) <= 1 / 12
    assert all((frame.width, frame.height) == size for frame in frames)


def test_frames_change_over_time(tmp_path: Path) -> None:
    out = tmp_path / "video.mp4"

    render_video(str(out), PROMPT, 2, "480p", "16:9", fps=12)

    frames = decode_frames(out)
    first, middle, last = frames[0], frames[len(frames) // 2], frames[-1]
    for a, b in [(first, middle), (middle, last)]:
        assert np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() > 5


def test_prompt_and_seed_choose_the_colours(tmp_path: Path) -> None:
    def first_frame(name: str, prompt: str, seed: int) -> np.ndarray:
        render_video(str(tmp_path / name), prompt, 1, "480p", "1:1", seed=seed)
        return decode_frames(tmp_path / name)[0].astype(np.int16)

    base = first_frame("a.mp4", PROMPT, 0)
    again = first_frame("b.mp4", PROMPT, 0)
    other_seed = first_frame("c.mp4", PROMPT, 1)

    assert np.abs(base - again).mean() < 1
    assert np.abs(base - other_seed).mean() > 5


def test_moov_atom_precedes_media_data_for_progressive_playback(tmp_path: Path) -> None:
    out = tmp_path / "video.mp4"

    render_video(str(out), PROMPT, 1, "480p", "16:9")

    data = out.read_bytes()
    assert data[4:8] == b"ftyp"
    assert 0 < data.index(b"moov") < data.index(b"mdat")


def test_render_leaves_only_the_finished_file(tmp_path: Path) -> None:
    out = tmp_path / "video.mp4"
    out.write_bytes(b"stale")

    render_video(str(out), PROMPT, 1, "480p", "16:9")

    assert [p.name for p in tmp_path.iterdir()] == ["video.mp4"]
    assert out.read_bytes()[4:8] == b"ftyp"


def test_failed_render_removes_its_partial_file(tmp_path: Path) -> None:
    # A directory at the destination makes the final os.replace fail after encoding.
    out = tmp_path / "video.mp4"
    out.mkdir()

    with pytest.raises(OSError):
        render_video(str(out), PROMPT, 1, "480p", "16:9")

    assert [p.name for p in tmp_path.iterdir()] == ["video.mp4"]
    assert out.is_dir()


@pytest.mark.parametrize(
    "prompt",
    ["", "   ", "x" * 500, "word " * 200, "一只红狐狸在雪地里奔跑", "Ünïcödé ✨ prompt"],
    ids=["empty", "blank", "one-huge-word", "very-long", "cjk", "symbols"],
)
def test_any_prompt_renders(tmp_path: Path, prompt: str) -> None:
    out = tmp_path / "video.mp4"

    info = render_video(str(out), prompt, 1, "480p", "9:16")

    assert len(decode_frames(out)) == info.frames == 12
