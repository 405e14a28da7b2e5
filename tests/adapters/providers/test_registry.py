"""Vendor configuration: keys and base URLs from the environment, routes checked at start-up."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from kensa_gql.adapters.cpu_pool import CpuPool
from kensa_gql.adapters.providers.registry import build_providers, check_routes
from kensa_gql.app import create_app
from kensa_gql.domain.catalog import Catalog
from kensa_gql.settings import Settings, SettingsError, load_settings

DEFAULTS = {
    "EVOLINK": "https://api.evolink.ai", "OPENAI": "https://api.openai.com",
    "GEMINI": "https://generativelanguage.googleapis.com", "DASHSCOPE": "https://dashscope-intl.aliyuncs.com",
    "ARK": "https://ark.ap-southeast.bytepluses.com",
}


def test_vendor_keys_and_base_urls_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KENSA_EVOLINK_API_KEY", "sk-evo-from-env")
    monkeypatch.setenv("KENSA_ARK_BASE_URL", "https://ark.cn-beijing.volces.com/")
    monkeypatch.setenv("KENSA_OPENAI_API_KEY", "  ")
    settings = load_settings()
    assert settings.evolink_api_key is not None
    assert settings.evolink_api_key.get_secret_value() == "sk-evo-from-env"
    assert settings.openai_api_key is None  # blank means unset
    assert settings.ark_base_url == "https://ark.cn-beijing.volces.com"
    for name, default in DEFAULTS.items():
        if name != "ARK":
            assert getattr(settings, f"{name.lower()}_base_url") == default
    assert "sk-evo-from-env" not in repr(settings) and "sk-evo-from-env" not in str(settings.model_dump())


@pytest.mark.parametrize("url",
                         ["https://api.evolink.ai/v1", "https://generativelanguage.googleapis.com/v1beta/",
                                 "https://ark.ap-southeast.bytepluses.com/api/v3", "ftp://api.evolink.ai",
                                 "https://api.evolink.ai/?key=abc"])
def test_a_base_url_with_a_version_path_or_query_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                            url: str) -> None:
    monkeypatch.setenv("KENSA_EVOLINK_BASE_URL", url)
    with pytest.raises(SettingsError, match="KENSA_EVOLINK_BASE_URL"):
        load_settings()


def test_a_base_url_may_keep_a_deployment_prefix() -> None:
    settings = Settings(openai_base_url="https://my-resource.openai.azure.com/openai")
    assert settings.openai_base_url == "https://my-resource.openai.azure.com/openai"


def test_a_route_to_a_vendor_without_a_key_stops_start_up(tmp_path: Path) -> None:
    settings = Settings(media_dir=tmp_path, routes={"sora-2": ["evolink"]})
    with pytest.raises(SettingsError, match="KENSA_EVOLINK_API_KEY is not set"):
        create_app(settings)


def test_a_route_to_an_unknown_provider_names_the_known_ones(tmp_path: Path) -> None:
    settings = Settings(media_dir=tmp_path, routes={"sora-2": ["evolnk"]})
    with pytest.raises(SettingsError, match="known providers: local, evolink"):
        create_app(settings)


async def test_only_vendors_with_a_key_are_built_and_a_vendor_that_cannot_make_a_model_is_refused(
        tmp_path: Path) -> None:
    settings = Settings(media_dir=tmp_path, gemini_api_key="g-key", dashscope_api_key="d-key")
    pool = CpuPool()
    async with httpx.AsyncClient() as http:
        providers = build_providers(settings, http=http, pool=pool, work_dir=tmp_path)
        assert set(providers) == {"local", "gemini", "dashscope"}
        catalog = Catalog.load()
        check_routes({"veo-3-1": ["gemini", "local"], "wan-2-6": ["dashscope"]}, providers, catalog)
        with pytest.raises(SettingsError, match="'dashscope' cannot make any veo-3-1 video"):
            check_routes({"veo-3-1": ["dashscope"]}, providers, catalog)
        with pytest.raises(SettingsError, match="twice"):
            check_routes({"veo-3-1": ["gemini", "gemini"]}, providers, catalog)
    pool.shutdown()
