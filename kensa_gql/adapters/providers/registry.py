"""Builds the configured providers and checks the routes against them at start-up."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from kensa_gql.adapters.cpu_pool import CpuPool
from kensa_gql.adapters.providers.local import LocalProvider
from kensa_gql.domain.catalog import Catalog
from kensa_gql.domain.ports import VideoProvider
from kensa_gql.settings import Settings, SettingsError

KNOWN = ("local",)


def build_providers(settings: Settings, *, http: httpx.AsyncClient, pool: CpuPool,
                    work_dir: Path) -> dict[str, VideoProvider]:
    providers: dict[str, VideoProvider] = {
        "local": LocalProvider(work_dir=work_dir, pool=pool, generation_seconds=settings.local_generation_seconds,
                               failure_rate=settings.local_failure_rate),
    }
    return providers


def check_route_names(routes: Mapping[str, Sequence[str]], catalog: Catalog) -> None:
    """Fail fast, before anything starts, on a route naming an unknown model or provider."""
    for model, names in routes.items():
        if catalog.get(model) is None:
            raise SettingsError(f"KENSA_ROUTES: unknown model {model!r}")
        if not names or not isinstance(names, list):
            raise SettingsError(f"KENSA_ROUTES: {model} needs a non-empty list of providers")
        for name in names:
            if name not in KNOWN:
                raise SettingsError(f"KENSA_ROUTES: {model} routes to unknown provider {name!r} "
                                    f"(known: {', '.join(KNOWN)})")


def check_routes(routes: Mapping[str, Sequence[str]], providers: Mapping[str, VideoProvider],
                 catalog: Catalog) -> None:
    for model, names in routes.items():
        if catalog.get(model) is None:
            raise SettingsError(f"KENSA_ROUTES: unknown model {model!r}")
        if not names:
            raise SettingsError(f"KENSA_ROUTES: {model} has an empty route")
        for name in names:
            if name not in providers:
                raise SettingsError(f"KENSA_ROUTES: {model} routes to {name!r}, which is not configured "
                                    f"(known providers: {', '.join(sorted(providers))})")
