"""Which providers may serve a request, in the operator's order of preference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kensa_gql.domain.catalog import GenerateRequest, ModelSpec
from kensa_gql.domain.errors import BadUserInput
from kensa_gql.domain.ports import VideoProvider

DEFAULT_ROUTE = ("local",)


class Router:
    def __init__(self, routes: Mapping[str, Sequence[str]], providers: Mapping[str, VideoProvider]) -> None:
        self.routes = {model: tuple(names) for model, names in routes.items()}
        self.providers = dict(providers)

    def route_of(self, model_id: str) -> tuple[str, ...]:
        return self.routes.get(model_id, DEFAULT_ROUTE)

    def route_for(self, spec: ModelSpec, req: GenerateRequest) -> list[str]:
        """The configured route minus providers that cannot make this exact video."""
        usable = [
            name for name in self.route_of(spec.id)
            if name in self.providers and self.providers[name].supports(
                spec, req.duration, req.resolution, req.aspect_ratio, req.start_image_url is not None)
        ]
        if not usable:
            raise BadUserInput(
                f"no configured provider for {spec.id} can make {req.duration}s {req.resolution} "
                f"{req.aspect_ratio}{' from an image' if req.start_image_url else ''}")
        return usable

    def provider(self, name: str) -> VideoProvider:
        return self.providers[name]
