"""Model specs, request validation and pricing. The data lives in ``catalog.toml``."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from kensa_gql.domain.errors import BadUserInput
from kensa_gql.domain.ledger import MAX_CREDITS
from kensa_gql.domain.urls import check_image_url

TEXT_TO_VIDEO = "text-to-video"
IMAGE_TO_VIDEO = "image-to-video"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    name: str
    vendor: str
    modes: tuple[str, ...]
    durations: tuple[int, ...]
    resolutions: tuple[str, ...]
    aspect_ratios: tuple[str, ...]
    max_prompt_length: int
    enabled: bool
    price_per_second: Mapping[str, Fraction]

    @property
    def max_duration(self) -> int:
        return max(self.durations)

    def price(self, duration: int, resolution: str) -> int:
        return math.ceil(self.price_per_second[resolution] * duration)


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """A validated, normalised generate request (``resolution`` is always set)."""

    prompt: str
    model: str
    duration: int
    aspect_ratio: str
    resolution: str
    start_image_url: str | None


class Catalog:
    """The models in catalogue order."""

    def __init__(self, specs: list[ModelSpec]) -> None:
        self.models = tuple(specs)
        self._by_id = {s.id: s for s in specs}

    def get(self, model_id: str) -> ModelSpec | None:
        return self._by_id.get(model_id)

    @classmethod
    def from_toml(cls, text: str) -> Catalog:
        data = tomllib.loads(text)
        specs = [_spec(model_id, raw) for model_id, raw in data["models"].items()]
        return cls(specs)

    @classmethod
    def load(cls, path: Path | None = None) -> Catalog:
        path = path or Path(__file__).resolve().parent.parent / "catalog.toml"
        return cls.from_toml(path.read_text(encoding="utf-8"))

    def validate(self, raw: Mapping[str, Any]) -> GenerateRequest:
        """Check a generate request against the catalogue; raise BadUserInput naming the field."""
        prompt = _required_str(raw, "prompt")
        model_id = _required_str(raw, "model")
        spec = self._by_id.get(model_id)
        if spec is None or not spec.enabled:
            known = ", ".join(s.id for s in self.models if s.enabled)
            raise BadUserInput(f"model: unknown or disabled model '{model_id}' (available: {known})",
                               field="model")
        if not prompt.strip():
            raise BadUserInput("prompt: must not be empty", field="prompt")
        if len(prompt) > spec.max_prompt_length:
            raise BadUserInput(f"prompt: at most {spec.max_prompt_length} characters for {spec.id}",
                               field="prompt")
        duration = _required_int(raw, "duration")
        if duration not in spec.durations:
            allowed = ", ".join(str(d) for d in spec.durations)
            raise BadUserInput(f"duration: {spec.id} offers {allowed} seconds", field="duration")
        aspect = _required_str(raw, "aspectRatio")
        if aspect not in spec.aspect_ratios:
            raise BadUserInput(f"aspectRatio: {spec.id} offers {', '.join(spec.aspect_ratios)}",
                               field="aspectRatio")
        quality = _optional_str(raw, "quality")
        resolution = spec.resolutions[0] if quality is None else quality
        if resolution not in spec.resolutions:
            raise BadUserInput(f"quality: {spec.id} offers {', '.join(spec.resolutions)}", field="quality")
        image = _optional_str(raw, "startImageUrl")
        if image is not None:
            if IMAGE_TO_VIDEO not in spec.modes:
                raise BadUserInput(f"startImageUrl: {spec.id} does not do image-to-video",
                                   field="startImageUrl")
            check_image_url(image)
        elif TEXT_TO_VIDEO not in spec.modes:
            raise BadUserInput(f"startImageUrl: {spec.id} needs a start image", field="startImageUrl")
        return GenerateRequest(prompt=prompt, model=spec.id, duration=duration, aspect_ratio=aspect,
                               resolution=resolution, start_image_url=image)


def _spec(model_id: str, raw: Mapping[str, Any]) -> ModelSpec:
    prices = {res: Fraction(str(value)) for res, value in raw["price_per_second"].items()}
    resolutions = tuple(raw["resolutions"])
    missing = [r for r in resolutions if r not in prices]
    if missing:
        raise ValueError(f"catalogue: {model_id} has no price for {missing}")
    spec = ModelSpec(
        id=model_id, name=raw["name"], vendor=raw["provider"], modes=tuple(raw["modes"]),
        durations=tuple(int(d) for d in raw["durations"]), resolutions=resolutions,
        aspect_ratios=tuple(raw["aspect_ratios"]), max_prompt_length=int(raw["max_prompt_length"]),
        enabled=bool(raw["enabled"]), price_per_second=prices,
    )
    # A price is frozen from, and rendered like, a balance: it has the same bound.
    if any(spec.price(d, r) > MAX_CREDITS for d in spec.durations for r in spec.resolutions):
        raise ValueError(f"catalogue: {model_id} has a price above {MAX_CREDITS} credits")
    return spec


def _required_str(raw: Mapping[str, Any], name: str) -> str:
    if name not in raw or raw[name] is None:
        raise BadUserInput(f"{name}: is required", field=name)
    value = raw[name]
    if not isinstance(value, str):
        raise BadUserInput(f"{name}: must be a string", field=name)
    return value


def _optional_str(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadUserInput(f"{name}: must be a string", field=name)
    return value


def _required_int(raw: Mapping[str, Any], name: str) -> int:
    if name not in raw or raw[name] is None:
        raise BadUserInput(f"{name}: is required", field=name)
    value = raw[name]
    if isinstance(value, bool):
        raise BadUserInput(f"{name}: must be an integer", field=name)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**31:
        return int(value)
    if not isinstance(value, int):
        raise BadUserInput(f"{name}: must be an integer", field=name)
    return value
