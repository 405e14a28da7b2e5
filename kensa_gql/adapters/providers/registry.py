"""Builds the configured providers and checks the routes against them at start-up."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path

import httpx

from kensa_gql.adapters.cpu_pool import CpuPool
from kensa_gql.adapters.providers.ark import ArkProvider
from kensa_gql.adapters.providers.callbacks import CallbackUrls
from kensa_gql.adapters.providers.dashscope import DashScopeProvider
from kensa_gql.adapters.providers.evolink import EvolinkProvider
from kensa_gql.adapters.providers.gemini import GeminiProvider
from kensa_gql.adapters.providers.local import LocalProvider
from kensa_gql.adapters.providers.openai import OpenAIProvider
from kensa_gql.domain.catalog import IMAGE_TO_VIDEO, Catalog, ModelSpec
from kensa_gql.domain.ports import VideoProvider
from kensa_gql.settings import Settings, SettingsError

VENDORS = ("evolink", "openai", "gemini", "dashscope", "ark")
KNOWN = ("local", *VENDORS)
CALLING_BACK = ("evolink", "ark")  # vendors that accept a per-task callback URL


def api_keys(settings: Settings) -> dict[str, str]:
    """The vendors with a key, by provider name (the only place keys are read from settings)."""
    keys: dict[str, str] = {}
    for name in VENDORS:
        secret = getattr(settings, f"{name}_api_key")
        if secret is not None:
            keys[name] = secret.get_secret_value()
    return keys


def callback_urls(settings: Settings) -> CallbackUrls:
    keys = api_keys(settings)
    return CallbackUrls(settings.public_url, {name: keys[name] for name in CALLING_BACK if name in keys})


def build_providers(settings: Settings, *, http: httpx.AsyncClient, pool: CpuPool,
                    work_dir: Path) -> dict[str, VideoProvider]:
    s = settings
    providers: dict[str, VideoProvider] = {
        "local": LocalProvider(work_dir=work_dir, pool=pool, generation_seconds=s.local_generation_seconds,
                               failure_rate=s.local_failure_rate),
    }
    keys = api_keys(s)
    callbacks = callback_urls(s)
    every = s.poll_interval_seconds
    if "evolink" in keys:
        providers["evolink"] = EvolinkProvider(http, api_key=keys["evolink"], base_url=s.evolink_base_url,
                                               poll_interval=every, callbacks=callbacks)
    if "openai" in keys:
        providers["openai"] = OpenAIProvider(http, api_key=keys["openai"], base_url=s.openai_base_url,
                                             poll_interval=every)
    if "gemini" in keys:
        providers["gemini"] = GeminiProvider(http, api_key=keys["gemini"], base_url=s.gemini_base_url,
                                             poll_interval=every, work_dir=work_dir,
                                             max_video_bytes=s.max_video_bytes)
    if "dashscope" in keys:
        providers["dashscope"] = DashScopeProvider(http, api_key=keys["dashscope"],
                                                   base_url=s.dashscope_base_url, poll_interval=every)
    if "ark" in keys:
        providers["ark"] = ArkProvider(http, api_key=keys["ark"], base_url=s.ark_base_url,
                                       poll_interval=every, callbacks=callbacks)
    return providers


def configured_names(settings: Settings) -> set[str]:
    return {"local", *api_keys(settings)}


def check_route_names(routes: Mapping[str, Sequence[str]], configured: Collection[str],
                      catalog: Catalog) -> None:
    """Refuse routes to unknown models or providers, and to vendors whose key is missing."""
    for model, names in routes.items():
        if catalog.get(model) is None:
            raise SettingsError(f"KENSA_ROUTES: unknown model {model!r}")
        if not names:
            raise SettingsError(f"KENSA_ROUTES: {model} has an empty route")
        if len(set(names)) != len(names):
            raise SettingsError(f"KENSA_ROUTES: {model} names a provider twice")
        for name in names:
            if name in configured:
                continue
            if name in VENDORS:
                raise SettingsError(f"KENSA_ROUTES: {model} routes to {name!r}, "
                                    f"but KENSA_{name.upper()}_API_KEY is not set")
            raise SettingsError(f"KENSA_ROUTES: {model} routes to {name!r}, which is not a provider "
                                f"(known providers: {', '.join(KNOWN)})")


def check_routes(routes: Mapping[str, Sequence[str]], providers: Mapping[str, VideoProvider],
                 catalog: Catalog) -> None:
    """The name checks, plus: every routed provider can make at least one video of that model."""
    check_route_names(routes, providers.keys(), catalog)
    for model, names in routes.items():
        spec = catalog.get(model)
        assert spec is not None
        for name in names:
            if not any(providers[name].supports(spec, duration, resolution, aspect, image)
                       for duration, resolution, aspect, image in combinations(spec)):
                raise SettingsError(f"KENSA_ROUTES: {name!r} cannot make any {model} video")


def combinations(spec: ModelSpec) -> Iterator[tuple[int, str, str, bool]]:
    """Every (duration, resolution, aspect ratio, with image) the catalogue allows for a model."""
    images = [mode == IMAGE_TO_VIDEO for mode in spec.modes]
    return itertools.product(spec.durations, spec.resolutions, spec.aspect_ratios, images)
