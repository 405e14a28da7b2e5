"""What each vendor receives: the exact body per model and mode, and every catalogue combination.

The expected bodies are written out from the vendors' documentation (shared/notes/providers.md),
not computed from the adapters, and each is also accepted by that vendor's emulator.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from kensa_gql.adapters.providers.callbacks import CallbackUrls
from kensa_gql.adapters.providers.registry import combinations
from kensa_gql.domain.catalog import Catalog
from kensa_gql.domain.ports import ProviderJob
from tests.adapters.providers.conftest import PUBLIC_URL, START_IMAGE, Wired, png
from tests.emulators.fixtures import KEYS

P = "A lighthouse at dusk, waves crashing"
UUID = "7d0c2f8e-3c1b-4b7a-9d51-2f0e6a1c9b44"
CATALOG = Catalog.load()


def job(model: str, duration: int, resolution: str, aspect: str, image: bool = False) -> ProviderJob:
    return ProviderJob(video_uuid=UUID, model=model, prompt=P, duration=duration, resolution=resolution,
                       aspect_ratio=aspect, start_image_url=START_IMAGE if image else None)


def callback(vendor: str) -> str:
    url = CallbackUrls(PUBLIC_URL, {vendor: KEYS[vendor]}).url_for(vendor, UUID)
    assert url is not None and url.startswith(f"{PUBLIC_URL}/webhooks/{vendor}/{UUID}/")
    return url


EXPECTED: list[tuple[str, ProviderJob, dict[str, Any]]] = [
    # EvoLink: sora-2-preview takes 4/8/12 s, sora-2 ("Lite") 10/15 s.
    ("evolink", job("sora-2", 4, "720p", "16:9"),
     {"model": "sora-2-preview", "prompt": P, "aspect_ratio": "16:9", "duration": 4}),
    ("evolink", job("sora-2", 12, "720p", "9:16", image=True),
     {"model": "sora-2-preview", "prompt": P, "aspect_ratio": "9:16", "duration": 12,
      "image_urls": [START_IMAGE]}),
    ("evolink", job("sora-2", 10, "720p", "16:9"),
     {"model": "sora-2", "prompt": P, "aspect_ratio": "16:9", "duration": 10}),
    ("evolink", job("sora-2", 15, "720p", "9:16", image=True),
     {"model": "sora-2", "prompt": P, "aspect_ratio": "9:16", "duration": 15, "image_urls": [START_IMAGE]}),
    ("evolink", job("veo-3-1", 6, "720p", "16:9"),
     {"model": "veo-3.1-generate-preview", "prompt": P, "generation_type": "TEXT", "aspect_ratio": "16:9",
      "duration": 6, "quality": "720p"}),
    ("evolink", job("veo-3-1", 4, "1080p", "9:16", image=True),
     {"model": "veo-3.1-generate-preview", "prompt": P, "generation_type": "FIRST&LAST",
      "aspect_ratio": "9:16",
      "duration": 4, "quality": "1080p", "image_urls": [START_IMAGE]}),
    ("evolink", job("wan-2-6", 10, "1080p", "4:3"),
     {"model": "wan2.6-text-to-video", "prompt": P, "aspect_ratio": "4:3", "quality": "1080p",
      "duration": 10}),
    ("evolink", job("wan-2-6", 5, "720p", "16:9", image=True),
     {"model": "wan2.6-image-to-video", "prompt": P, "quality": "720p", "duration": 5,
      "image_urls": [START_IMAGE]}),
    ("evolink", job("seedance-1-5", 7, "480p", "21:9"),
     {"model": "seedance-1.5-pro", "prompt": P, "duration": 7, "quality": "480p", "aspect_ratio": "21:9",
      "generate_audio": True}),
    ("evolink", job("seedance-1-5", 12, "1080p", "1:1", image=True),
     {"model": "seedance-1.5-pro", "prompt": P, "duration": 12, "quality": "1080p", "aspect_ratio": "1:1",
      "generate_audio": True, "image_urls": [START_IMAGE]}),
    # Gemini: durationSeconds is a number; 1080p only at 8 s; the start frame inline as base64.
    ("gemini", job("veo-3-1", 4, "720p", "16:9"),
     {"instances": [{"prompt": P}],
      "parameters": {"aspectRatio": "16:9", "resolution": "720p", "durationSeconds": 4, "sampleCount": 1}}),
    ("gemini", job("veo-3-1", 8, "1080p", "9:16", image=True),
     {"instances": [{"prompt": P, "image": {"bytesBase64Encoded": base64.b64encode(png()).decode(),
                                            "mimeType": "image/png"}}],
      "parameters": {"aspectRatio": "9:16", "resolution": "1080p", "durationSeconds": 8, "sampleCount": 1}}),
    # DashScope: t2v takes size as W*H pixels, i2v takes img_url and a resolution tier.
    ("dashscope", job("wan-2-6", 5, "720p", "16:9"),
     {"model": "wan2.6-t2v", "input": {"prompt": P}, "parameters": {"size": "1280*720", "duration": 5}}),
    ("dashscope", job("wan-2-6", 15, "1080p", "3:4"),
     {"model": "wan2.6-t2v", "input": {"prompt": P}, "parameters": {"size": "1248*1632", "duration": 15}}),
    ("dashscope", job("wan-2-6", 10, "720p", "4:3"),
     {"model": "wan2.6-t2v", "input": {"prompt": P}, "parameters": {"size": "1088*832", "duration": 10}}),
    ("dashscope", job("wan-2-6", 10, "1080p", "1:1", image=True),
     {"model": "wan2.6-i2v", "input": {"prompt": P, "img_url": START_IMAGE},
      "parameters": {"resolution": "1080P", "duration": 10}}),
    # Ark: a content list; the start frame is an image_url item with role first_frame.
    ("ark", job("seedance-1-5", 5, "720p", "16:9"),
     {"model": "seedance-1-5-pro-251215", "content": [{"type": "text", "text": P}], "resolution": "720p",
      "ratio": "16:9", "duration": 5, "generate_audio": True, "watermark": False}),
    ("ark", job("seedance-1-5", 11, "480p", "21:9", image=True),
     {"model": "seedance-1-5-pro-251215",
      "content": [{"type": "text", "text": P},
                  {"type": "image_url", "image_url": {"url": START_IMAGE}, "role": "first_frame"}],
      "resolution": "480p", "ratio": "21:9", "duration": 11, "generate_audio": True, "watermark": False}),
    # OpenAI: seconds is a string, size is WxH.
    ("openai", job("sora-2", 8, "720p", "16:9"),
     {"prompt": P, "model": "sora-2", "seconds": "8", "size": "1280x720"}),
    ("openai", job("sora-2", 12, "720p", "9:16"),
     {"prompt": P, "model": "sora-2", "seconds": "12", "size": "720x1280"}),
]


@pytest.mark.parametrize(("vendor", "the_job", "expected"), EXPECTED,
                         ids=[f"{v}-{j.model}-{j.duration}s-{j.resolution}-{j.aspect_ratio}"
                              f"{'-image' if j.start_image_url else ''}" for v, j, _ in EXPECTED])
async def test_vendor_receives_exactly_the_documented_body(wire: Callable[..., Wired], vendor: str,
                                                          the_job: ProviderJob,
                                                          expected: dict[str, Any]) -> None:
    wired = wire(vendor)
    task_id = await wired.provider.submit(the_job)
    [create] = [s for s in wired.emulator.seen if s.method == "POST"]
    if vendor in ("evolink", "ark"):  # they call back: the per-task URL rides along
        expected = {**expected, "callback_url": callback(vendor)}
    assert create.body == expected
    assert task_id.split("/")[-1] in wired.emulator.tasks  # Gemini's id is the operation's full name


async def test_openai_image_to_video_uploads_the_start_frame_fitted_to_the_size(
        wire: Callable[..., Wired]) -> None:
    wired = wire("openai")
    await wired.provider.submit(job("sora-2", 4, "720p", "9:16", image=True))
    [create] = [s for s in wired.emulator.seen if s.method == "POST"]
    assert create.headers["content-type"].startswith("multipart/form-data")
    reference = create.body.pop("input_reference")
    assert create.body == {"prompt": P, "model": "sora-2", "seconds": "4", "size": "720x1280"}
    assert reference["content_type"] == "image/png"
    with Image.open(io.BytesIO(reference["bytes"])) as image:
        assert image.size == (720, 1280)  # the 64x48 source, scaled and cropped to exactly the size
    assert wired.fetch.urls == [START_IMAGE]


async def test_ark_on_volcengine_uses_the_doubao_model_id(wire: Callable[..., Wired]) -> None:
    wired = wire("ark", base_url="https://ark.cn-beijing.volces.com")
    await wired.provider.submit(job("seedance-1-5", 5, "720p", "16:9"))
    [create] = [s for s in wired.emulator.seen if s.method == "POST"]
    assert create.path == "/api/v3/contents/generations/tasks"
    assert create.body["model"] == "doubao-seedance-1-5-pro-251215"


@pytest.mark.parametrize(("vendor", "header", "value"), [
    ("evolink", "authorization", f"Bearer {KEYS['evolink']}"),
    ("openai", "authorization", f"Bearer {KEYS['openai']}"),
    ("gemini", "x-goog-api-key", KEYS["gemini"]),
    ("dashscope", "authorization", f"Bearer {KEYS['dashscope']}"),
    ("ark", "authorization", f"Bearer {KEYS['ark']}"),
])
async def test_each_vendor_gets_its_key_in_its_documented_header_and_never_in_the_url(
        wire: Callable[..., Wired], vendor: str, header: str, value: str) -> None:
    wired = wire(vendor)
    model = {"evolink": "sora-2", "openai": "sora-2", "gemini": "veo-3-1", "dashscope": "wan-2-6",
             "ark": "seedance-1-5"}[vendor]
    duration = {"wan-2-6": 5, "veo-3-1": 8}.get(model, 8)
    task_id = await wired.provider.submit(job(model, duration, "720p", "16:9"))
    await wired.provider.poll(task_id, job(model, duration, "720p", "16:9"))
    assert len(wired.emulator.seen) == 2
    for seen in wired.emulator.seen:
        assert seen.headers[header] == value
        assert KEYS[vendor] not in seen.path + seen.query


# Which catalogue combinations each vendor cannot make, written down from its documentation.
def _unsupported(vendor: str, model: str, duration: int, resolution: str, aspect: str, image: bool) -> bool:
    if vendor == "evolink":
        return model == "sora-2" and resolution != "720p"  # no documented 1080p Sora on EvoLink
    if vendor == "gemini":
        return model != "veo-3-1" or (resolution == "1080p" and duration != 8)
    if vendor == "dashscope":
        return model != "wan-2-6"
    if vendor == "ark":
        return model != "seedance-1-5"
    if vendor == "openai":
        return model != "sora-2" or resolution != "720p" or duration not in (4, 8, 12)
    raise AssertionError(vendor)


@pytest.mark.parametrize("vendor", ["evolink", "gemini", "dashscope", "ark", "openai"])
async def test_every_catalogue_combination_is_either_accepted_by_the_vendor_or_skipped(
        wire: Callable[..., Wired], vendor: str) -> None:
    wired = wire(vendor)
    checked = 0
    for spec in CATALOG.models:
        for duration, resolution, aspect, image in combinations(spec):
            supported = wired.provider.supports(spec, duration, resolution, aspect, image)
            assert supported is not _unsupported(vendor, spec.id, duration, resolution, aspect, image), \
                (spec.id, duration, resolution, aspect, image)
            if not supported:
                continue
            await wired.provider.submit(job(spec.id, duration, resolution, aspect, image))
            checked += 1
    # The emulator validates every body against the documented values; nothing was refused.
    assert len(wired.emulator.tasks) == checked > 0
