"""The catalogue of video models."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from kensa_gql.api.graphql.context import Context
from kensa_gql.domain.catalog import ModelSpec


@strawberry.type(description="What one video of a model costs, by duration and quality.")
class Price:
    duration: int = strawberry.field(description="Seconds; one of the model's `durations`.")
    quality: str = strawberry.field(description="One of the model's `resolutions` (`quality` in `GenerateVideoInput`).")
    credits: int = strawberry.field(description="The exact charge in credits, frozen on generate.")


@strawberry.type(description="A video model and what it can make.")
class VideoModel:
    id: strawberry.ID = strawberry.field(description="The id to pass as `model`.")
    name: str = strawberry.field(description="A human-readable name.")
    provider: str = strawberry.field(description="The vendor behind the model.")
    modes: list[str] = strawberry.field(description="`text-to-video` and/or `image-to-video`.")
    max_duration: int = strawberry.field(description="The longest duration, in seconds.")
    durations: list[int] = strawberry.field(description="The durations offered, in seconds.")
    resolutions: list[str] = strawberry.field(description="The qualities offered; the first is the default.")
    aspect_ratios: list[str] = strawberry.field(description="The aspect ratios offered.")
    enabled: bool = strawberry.field(description="Whether it takes new requests.")
    prices: list[Price] = strawberry.field(
        description="The price of every duration and quality, durations first, both in catalogue order. "
                    "`price` answers for a whole request, validated as generate validates it.")

    @classmethod
    def from_domain(cls, spec: ModelSpec) -> VideoModel:
        return cls(id=strawberry.ID(spec.id), name=spec.name, provider=spec.vendor, modes=list(spec.modes),
                   max_duration=spec.max_duration, durations=list(spec.durations),
                   resolutions=list(spec.resolutions), aspect_ratios=list(spec.aspect_ratios),
                   enabled=spec.enabled,
                   prices=[Price(duration=d, quality=r, credits=spec.price(d, r))
                           for d in spec.durations for r in spec.resolutions])


@strawberry.type
class ModelQueries:
    @strawberry.field(description="Every model in the catalogue, in catalogue order (no key needed).")
    def models(self, info: Info[Context, None]) -> list[VideoModel]:
        return [VideoModel.from_domain(spec) for spec in info.context.deps.catalog.models]
