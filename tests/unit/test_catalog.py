from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kensa_gql.domain.catalog import Catalog
from kensa_gql.domain.errors import BadUserInput

CATALOG = Catalog.load()
BASE = {"prompt": "a cat", "model": "sora-2", "duration": 10, "aspectRatio": "16:9"}


def test_the_catalogue_lists_the_four_models_with_the_vendors_limits() -> None:
    assert [m.id for m in CATALOG.models] == ["sora-2", "veo-3-1", "wan-2-6", "seedance-1-5"]
    seedance = CATALOG.get("seedance-1-5")
    assert seedance is not None and seedance.durations == tuple(range(4, 13)) and seedance.max_duration == 12
    assert CATALOG.get("veo-3-1").durations == (4, 6, 8)  # type: ignore[union-attr]


def test_a_ten_second_720p_sora_video_costs_two_credits_as_in_the_reference() -> None:
    assert CATALOG.get("sora-2").price(10, "720p") == 2  # type: ignore[union-attr]


def test_prices_round_up_to_whole_credits() -> None:
    spec = CATALOG.get("seedance-1-5")
    assert spec is not None
    assert spec.price(5, "480p") == 8  # 1.42 * 5 = 7.1 -> 8
    assert all(spec.price(d, r) >= 1 for d in spec.durations for r in spec.resolutions)


def test_a_price_past_what_a_balance_can_hold_is_a_catalogue_error() -> None:
    # 2**31 - 1 credits is the most any balance holds (GraphQL Int), so no video may cost more
    text = (Path(__file__).resolve().parents[2] / "kensa_gql" / "catalog.toml").read_text()
    huge = text.replace('price_per_second = { "720p" = "0.2"', 'price_per_second = { "720p" = "200000000"', 1)
    assert huge != text
    with pytest.raises(ValueError, match="sora-2 has a price above 2147483647 credits"):
        Catalog.from_toml(huge)


def test_quality_defaults_to_the_models_first_resolution() -> None:
    assert CATALOG.validate(BASE).resolution == "720p"
    assert CATALOG.validate({**BASE, "model": "seedance-1-5", "duration": 5}).resolution == "480p"


@pytest.mark.parametrize(("change", "field"), [
    ({"model": "sora-3"}, "model"),
    ({"model": None}, "model"),
    ({"model": 7}, "model"),
    ({"duration": 7}, "duration"),
    ({"duration": "10"}, "duration"),
    ({"duration": True}, "duration"),
    ({"duration": 10.5}, "duration"),
    ({"aspectRatio": "1:1"}, "aspectRatio"),
    ({"quality": "4k"}, "quality"),
    ({"quality": 720}, "quality"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * 5001}, "prompt"),
    ({"prompt": ["a"]}, "prompt"),
    ({"startImageUrl": "ftp://example.com/a.jpg"}, "startImageUrl"),
    ({"startImageUrl": "http://127.0.0.1/a.jpg"}, "startImageUrl"),
])
def test_invalid_requests_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(BadUserInput) as info:
        CATALOG.validate({**BASE, **change})
    assert info.value.field == field
    assert info.value.message.startswith(field)


@pytest.mark.parametrize("missing", ["prompt", "model", "duration", "aspectRatio"])
def test_missing_required_fields_are_refused(missing: str) -> None:
    raw = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(BadUserInput, match=f"^{missing}: is required"):
        CATALOG.validate(raw)


def one_model_catalog(*, enabled: bool = True) -> Catalog:
    return Catalog.from_toml(f"""
[models.m]
name = "M"
provider = "X"
modes = ["text-to-video"]
durations = [4]
resolutions = ["720p"]
aspect_ratios = ["16:9"]
max_prompt_length = 10
enabled = {str(enabled).lower()}
price_per_second = {{ "720p" = "1" }}
""")


def test_a_disabled_model_is_refused() -> None:
    with pytest.raises(BadUserInput, match="unknown or disabled"):
        one_model_catalog(enabled=False).validate({"prompt": "a", "model": "m", "duration": 4, "aspectRatio": "16:9"})


def test_image_to_video_is_refused_on_a_text_only_model() -> None:
    with pytest.raises(BadUserInput, match="image-to-video") as info:
        one_model_catalog().validate({"prompt": "a", "model": "m", "duration": 4, "aspectRatio": "16:9",
                                      "startImageUrl": "https://example.com/a.jpg"})
    assert info.value.field == "startImageUrl"
