"""JPEG thumbnails cut from real video files; also the check that a download is a video at all."""

from __future__ import annotations

import os

import av
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

# FFmpeg happily "decodes" a lone PNG or JPEG as a one-frame video; a provider that hands us a
# still image (often an error placeholder) has not delivered a video.
_IMAGE_DEMUXERS = frozenset({"image2", "mjpeg"})


class ThumbnailError(Exception):
    """The file is not a decodable video, so no thumbnail can be cut from it."""


def make_thumbnail(
    video_path: str, out_path: str, *, max_width: int = 640, at_fraction: float = 0.5
) -> tuple[int, int]:
    """Save the frame nearest at_fraction of the video as a JPEG at most max_width wide; return its size."""
    if max_width < 1:
        raise ValueError(f"max_width must be positive, got {max_width}")
    try:
        with av.open(video_path, "r") as container:
            frame = _pick_frame(container, min(max(at_fraction, 0.0), 1.0))
            width, height = _fit(frame.width, frame.height, max_width)
            # swscale's area filter resizes in the same pass as the RGB conversion.
            rgb = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
    except FileNotFoundError:
        raise  # a missing file is our bug, not a bogus video
    except av.FFmpegError as exc:
        raise ThumbnailError(f"{video_path} is not a decodable video: {exc}") from exc
    _save_jpeg(Image.fromarray(rgb), out_path)
    return width, height


def _pick_frame(container: InputContainer, fraction: float) -> VideoFrame:
    format_names = set(container.format.name.split(","))
    if format_names & _IMAGE_DEMUXERS or _is_pipe(format_names):
        raise ThumbnailError(f"{container.name} is a still image ({container.format.name}), not a video")
    if not container.streams.video:
        raise ThumbnailError(f"{container.name} has no video stream")
    stream = container.streams.video[0]
    target = _target_seconds(container, stream, fraction)
    if target > 0 and stream.time_base is not None:
        try:
            # Seeking lands on the keyframe at or before the target; decoding forward reaches it.
            container.seek(int(target / stream.time_base), stream=stream, backward=True)
            frame = _first_frame_at(container, stream, target)
            if frame is not None:
                return frame
        except av.FFmpegError:
            pass  # unseekable or damaged near the target: the first frame will do
        container.seek(0)
    frame = _first_frame_at(container, stream, 0.0)
    if frame is None:
        raise ThumbnailError(f"{container.name} has a video stream but no decodable frame")
    return frame


def _is_pipe(format_names: set[str]) -> bool:
    return any(name.endswith("_pipe") for name in format_names)


def _target_seconds(container: InputContainer, stream: VideoStream, fraction: float) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base) * fraction
    if container.duration is not None:
        return container.duration / av.time_base * fraction
    return 0.0


def _first_frame_at(container: InputContainer, stream: VideoStream, seconds: float) -> VideoFrame | None:
    """The first frame at or after seconds, else the last frame before it (the target was past the end)."""
    latest: VideoFrame | None = None
    for frame in container.decode(stream):
        latest = frame
        if frame.time is None or frame.time >= seconds:
            break
    return latest


def _fit(width: int, height: int, max_width: int) -> tuple[int, int]:
    if width <= max_width:
        return width, height
    return max_width, max(1, round(height * max_width / width))


def _save_jpeg(image: Image.Image, out_path: str) -> None:
    part_path = out_path + ".part"
    try:
        # The format is named because the ".part" suffix would hide it from Pillow.
        image.save(part_path, format="JPEG", quality=85, optimize=True)
        os.replace(part_path, out_path)
    except BaseException:
        try:
            os.remove(part_path)
        except FileNotFoundError:
            pass
        raise
