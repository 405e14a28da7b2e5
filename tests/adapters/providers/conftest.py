from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from kensa_gql.adapters.providers.ark import ArkProvider
from kensa_gql.adapters.providers.callbacks import CallbackUrls
from kensa_gql.adapters.providers.dashscope import DashScopeProvider
from kensa_gql.adapters.providers.evolink import EvolinkProvider
from kensa_gql.adapters.providers.gemini import GeminiProvider
from kensa_gql.adapters.providers.http import RetryPolicy
from kensa_gql.adapters.providers.openai import OpenAIProvider
from kensa_gql.domain.ports import VideoProvider
from tests.emulators.common import Emulator
from tests.emulators.fixtures import KEYS

BASES = {"evolink": "http://evolink.test", "openai": "http://openai.test", "gemini": "http://gemini.test",
         "dashscope": "http://dashscope.test", "ark": "http://ark.test"}
START_IMAGE = "https://images.example.com/first.png"
PUBLIC_URL = "https://gateway.example.com"


def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, format="PNG")
    return out.getvalue()


class FetchedImages:
    """Stands in for the safe fetcher at the adapter's port: records what was asked for."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def __call__(self, url: str) -> tuple[bytes, str]:
        self.urls.append(url)
        return png(), "image/png"


async def no_sleep(_seconds: float) -> None:
    return None


def make_provider(vendor: str, http: httpx.AsyncClient, *, work_dir: Path, fetch: FetchedImages | None = None,
                  base_url: str | None = None, policy: RetryPolicy | None = None) -> VideoProvider:
    base = base_url or BASES[vendor]
    key = KEYS[vendor]
    callbacks = CallbackUrls(PUBLIC_URL, {vendor: key})
    if vendor == "evolink":
        return EvolinkProvider(http, api_key=key, base_url=base, poll_interval=0.1, callbacks=callbacks,
                               policy=policy)
    if vendor == "ark":
        return ArkProvider(http, api_key=key, base_url=base, poll_interval=0.1, callbacks=callbacks,
                           policy=policy)
    if vendor == "dashscope":
        return DashScopeProvider(http, api_key=key, base_url=base, poll_interval=0.1, policy=policy)
    if vendor == "gemini":
        return GeminiProvider(http, api_key=key, base_url=base, poll_interval=0.1, work_dir=work_dir,
                              max_video_bytes=50_000_000, fetch=fetch or FetchedImages(), policy=policy)
    if vendor == "openai":
        return OpenAIProvider(http, api_key=key, base_url=base, poll_interval=0.1,
                              fetch=fetch or FetchedImages(),
                              policy=policy)
    raise AssertionError(vendor)


class Wired:
    """An adapter talking to its emulator in-process (httpx.ASGITransport), no sockets."""

    def __init__(self, emulator: Emulator, provider: VideoProvider, http: httpx.AsyncClient,
                 fetch: FetchedImages) -> None:
        self.emulator = emulator
        self.provider = provider
        self.http = http
        self.fetch = fetch


@pytest.fixture
async def wire(emulator_for: Callable[[str], Emulator],
               tmp_path: Path) -> AsyncIterator[Callable[..., Wired]]:
    clients: list[httpx.AsyncClient] = []

    def make(vendor: str, **kwargs: Any) -> Wired:
        emulator = emulator_for(vendor)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator.app()))
        clients.append(http)
        fetch = FetchedImages()
        kwargs.setdefault("policy", RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0))
        provider = make_provider(vendor, http, work_dir=tmp_path / "work", fetch=fetch, **kwargs)
        return Wired(emulator, provider, http, fetch)

    yield make
    for client in clients:
        await client.aclose()
