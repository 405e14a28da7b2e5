"""The embedded renderer's media code: real H.264 MP4 files drawn from a prompt.

Everything here is synchronous and CPU-bound; ``render_video`` runs in a worker process
(``ProcessPoolExecutor``), so it is a top-level function taking only picklable arguments.

Frames are composed directly in yuv420p (the encoder's own format): the gradient is separable,
so each plane is one broadcast add of two 1-D waves, and no per-frame RGB->YUV conversion runs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

SHORT_SIDES: dict[str, int] = {"480p": 480, "720p": 720, "1080p": 1080}
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "16:9": (16, 9),
    "9:16": (9, 16),
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "21:9": (21, 9),
}

_MAX_PROMPT_CHARS = 160
_MAX_TEXT_LINES = 5
# AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic BT709 = 1, AVColorRange MPEG = 1.
_BT709 = 1
_LIMITED_RANGE = 1

Plane = npt.NDArray[np.uint8]
Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class RenderedInfo:
    """What was written: frame size, frame count, duration and file size."""

    width: int
    height: int
    frames: int
    duration_seconds: float
    size_bytes: int


def frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """Return (width, height) for a resolution naming the short side and a W:H aspect ratio."""
    try:
        short = SHORT_SIDES[resolution]
        aw, ah = ASPECT_RATIOS[aspect_ratio]
    except KeyError as exc:
        raise ValueError(f"unsupported resolution/aspect ratio: {resolution} {aspect_ratio}") from exc
    long = _even(short * max(aw, ah) / min(aw, ah))
    return (long, short) if aw >= ah else (short, long)


def _even(value: float) -> int:
    # yuv420p halves both chroma dimensions, so libx264 rejects odd sizes; rounding to the
    # nearest even number (480p 16:9 -> 853.3 -> 854) keeps the aspect error under one pixel.
    return max(2, 2 * round(value / 2))


def render_video(
    out_path: str,
    prompt: str,
    duration: int,
    resolution: str,
    aspect_ratio: str,
    *,
    fps: int = 12,
    seed: int = 0,
) -> RenderedInfo:
    """Render an animated-gradient H.264 MP4 showing the prompt, written atomically to out_path."""
    if duration < 1 or fps < 1:
        raise ValueError(f"duration and fps must be positive, got {duration}s at {fps} fps")
    width, height = frame_size(resolution, aspect_ratio)
    frames = duration * fps
    palette = _palette(prompt, seed)
    canvas = _Canvas(width, height)
    caption = _caption(prompt, width, height)
    clock = _Timecode(width, height, fps, frames)
    part_path = out_path + ".part"
    try:
        # The muxer is named explicitly because the ".part" suffix hides the format from FFmpeg.
        with av.open(part_path, "w", format="mp4", container_options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            context = stream.codec_context
            context.colorspace = context.color_primaries = context.color_trc = _BT709
            context.color_range = _LIMITED_RANGE
            time_base = Fraction(1, fps)
            for index in range(frames):
                _gradient(canvas, palette, index / frames)
                if caption is not None:
                    caption.compose(canvas)
                clock.overlay(index).compose(canvas)
                # from_ndarray copies, so one canvas buffer is reused for every frame.
                frame = av.VideoFrame.from_ndarray(canvas.buffer, format="yuv420p")
                frame.pts, frame.time_base = index, time_base
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(part_path, out_path)
    except BaseException:
        _discard(part_path)
        raise
    return RenderedInfo(width, height, frames, frames / fps, os.path.getsize(out_path))


def _discard(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class _Canvas:
    """One contiguous yuv420p buffer, laid out as ``VideoFrame.from_ndarray`` expects, with plane views."""

    def __init__(self, width: int, height: int) -> None:
        self.buffer: Plane = np.empty((height * 3 // 2, width), dtype=np.uint8)
        flat = self.buffer.reshape(-1)
        luma, chroma = width * height, width * height // 4
        self.planes: tuple[Plane, Plane, Plane] = (
            flat[:luma].reshape(height, width),
            flat[luma : luma + chroma].reshape(height // 2, width // 2),
            flat[luma + chroma :].reshape(height // 2, width // 2),
        )


def _yuv(rgb: Floats, *, offset: bool = True) -> Floats:
    """BT.709 limited-range Y'CbCr of RGB in [0, 255]; without offset, only the linear part."""
    kr, kb = 0.2126, 0.0722
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = kr * r + (1 - kr - kb) * g + kb * b
    y = luma * (219 / 255)
    u = (b - luma) / (2 * (1 - kb)) * (224 / 255)
    v = (r - luma) / (2 * (1 - kr)) * (224 / 255)
    yuv = np.stack([y, u, v], axis=-1).astype(np.float32)
    return yuv + np.array([16, 128, 128], dtype=np.float32) if offset else yuv


def _palette(prompt: str, seed: int) -> Floats:
    # hashlib rather than hash(): str hashes are salted per process, and the same prompt and
    # seed must look the same whichever worker renders it.
    digest = hashlib.blake2b(f"{seed}\x00{prompt}".encode(), digest_size=16).digest()
    return np.frombuffer(digest, dtype=np.uint8).astype(np.float32)


def _gradient(canvas: _Canvas, palette: Floats, progress: float) -> None:
    """Fill the canvas with colour(x) + colour(y), two cosine blends drifting with progress."""
    height, width = canvas.planes[0].shape
    across = _yuv(_wave(width, palette[0:3], palette[3:6], palette[12] / 255 + progress))
    down = _yuv(_wave(height, palette[6:9], palette[9:12], palette[13] / 255 - progress), offset=False)
    # Chroma halves may be negative; moving each channel's minimum from down to across keeps
    # both halves in uint8 without changing their sum, which is a valid colour (each wave <= 127.5).
    shift = down.min(axis=0)
    across_u8 = np.rint(across + shift).astype(np.uint8)
    down_u8 = np.rint(down - shift).astype(np.uint8)
    for channel, plane in enumerate(canvas.planes):
        step = 1 if channel == 0 else 2  # chroma is subsampled 2x2: take every other sample
        np.add(down_u8[::step, channel, None], across_u8[None, ::step, channel], out=plane)


def _wave(length: int, start: Floats, end: Floats, phase: float) -> Floats:
    position = np.linspace(0.0, 1.0, length, dtype=np.float32)
    blend = 0.5 - 0.5 * np.cos(2 * np.pi * (position + phase))
    colour: Floats = (start[None, :] + (end - start)[None, :] * blend[:, None]) * 0.5
    return colour


class _Overlay:
    """An RGBA image converted once to premultiplied yuv420p, alpha-blended in integers per frame."""

    def __init__(self, image: Image.Image, left: int, top: int) -> None:
        # Position and size are even so the chroma planes line up with luma.
        self.left, self.top = left & ~1, top & ~1
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        rgba = rgba[: rgba.shape[0] & ~1, : rgba.shape[1] & ~1]
        alpha = rgba[..., 3]
        premultiplied = _yuv(rgba[..., :3]) * alpha[..., None]
        self.layers: list[tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16]]] = []
        for channel in range(3):
            a, p = alpha, premultiplied[..., channel]
            if channel:
                a, p = _halve(a), _halve(p)
            self.layers.append((np.rint(255 - a).astype(np.uint16), np.rint(p).astype(np.uint16)))

    def compose(self, canvas: _Canvas) -> None:
        for channel, (plane, (inverse_alpha, premultiplied)) in enumerate(
            zip(canvas.planes, self.layers, strict=True)
        ):
            scale = 1 if channel == 0 else 2
            top, left = self.top // scale, self.left // scale
            rows, cols = inverse_alpha.shape
            region = plane[top : top + rows, left : left + cols]
            # 255 * 255 fits in uint16, so the blend needs no wider type.
            region[...] = (region * inverse_alpha + premultiplied + 127) // 255


def _halve(values: Floats) -> Floats:
    rows, cols = values.shape
    halved: Floats = values.reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3), dtype=np.float32)
    return halved


def _caption(prompt: str, width: int, height: int) -> _Overlay | None:
    """The prompt, wrapped and truncated, on a translucent panel in the middle of the frame."""
    font = _font(max(12, min(width, height) // 18))
    lines = _wrap(_truncate(prompt), font, int(width * 0.8))
    if not lines:
        return None
    size = int(font.size)
    line_height, pad = int(size * 1.25), size // 2
    panel_w = int(max(font.getlength(line) for line in lines)) + 2 * pad
    panel_h = line_height * len(lines) + 2 * pad
    panel = Image.new("RGBA", (panel_w, panel_h), (0, 0, 0, 110))
    draw = ImageDraw.Draw(panel)
    for row, line in enumerate(lines):
        draw.text((pad, pad + row * line_height), line, font=font, fill=(255, 255, 255, 255))
    return _Overlay(panel, (width - panel_w) // 2, (height - panel_h) // 2)


def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=size)
    # Without FreeType, Pillow falls back to a fixed 11px bitmap font that ignores size.
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise RuntimeError("the embedded renderer needs Pillow built with FreeType")
    return font


def _truncate(prompt: str) -> str:
    text = " ".join(prompt.split())
    return text if len(text) <= _MAX_PROMPT_CHARS else text[: _MAX_PROMPT_CHARS - 3].rstrip() + "..."


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    """Greedy word wrap by measured width; a word wider than a line is split by character."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while len(current) > 1 and font.getlength(current) > max_width:
            cut = len(current) - 1
            while cut > 1 and font.getlength(current[:cut]) > max_width:
                cut -= 1
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    if len(lines) > _MAX_TEXT_LINES:
        lines = lines[:_MAX_TEXT_LINES]
        lines[-1] = lines[-1].rstrip(".") + "..."
    return lines


class _Timecode:
    """An opaque box in the bottom-left corner with the time and the frame number."""

    def __init__(self, width: int, height: int, fps: int, frames: int) -> None:
        short_side = min(width, height)
        self.font = _font(max(10, short_side // 36))
        self.fps, self.frames = fps, frames
        size = int(self.font.size)
        widest = self._label(frames - 1).replace("1", "0")
        self.box = (int(self.font.getlength(widest)) + size, int(size * 1.5))
        margin = max(4, short_side // 60)
        self.corner = (margin, height - margin - self.box[1])

    def _label(self, index: int) -> str:
        seconds = index / self.fps
        return f"{int(seconds // 60):02d}:{seconds % 60:05.2f}  #{index + 1}/{self.frames}"

    def overlay(self, index: int) -> _Overlay:
        image = Image.new("RGB", self.box, (16, 16, 16))
        size = int(self.font.size)
        ImageDraw.Draw(image).text((size // 2, size // 4), self._label(index), font=self.font)
        return _Overlay(image, *self.corner)
