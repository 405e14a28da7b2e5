"""Videos: the types, the queries, generate/cancel/retry/delete, and the live ``videoStatus`` subscription."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from kensa_gql.api import render
from kensa_gql.api.graphql.arguments import PageArg, PageSizeArg, UuidArg
from kensa_gql.api.graphql.context import Context
from kensa_gql.api.graphql.selections import asks_for
from kensa_gql.api.graphql.webhooks import WebhookEvent, event_names
from kensa_gql.api.ratelimits import check_generate
from kensa_gql.domain import videos as domain
from kensa_gql.domain.paging import page_of
from kensa_gql.services import following
from kensa_gql.services import videos as service
from kensa_gql.services.accounts import Principal
from kensa_gql.services.deps import Deps


@strawberry.enum(description="Where a video is in its life; COMPLETED, FAILED and CANCELLED are final.")
class VideoStatus(enum.Enum):
    PENDING = strawberry.enum_value("PENDING", description="Accepted and queued; its credits are frozen.")
    GENERATING = strawberry.enum_value("GENERATING", description="A provider is making it; see `progress`.")
    UPLOADING = strawberry.enum_value("UPLOADING", description="Made; being stored.")
    COMPLETED = strawberry.enum_value("COMPLETED",
                                      description="Ready at `videoUrl`; its credits are used.")
    FAILED = strawberry.enum_value("FAILED", description="Not made; its credits were given back. See `failure`.")
    CANCELLED = strawberry.enum_value(
        "CANCELLED", description="Stopped by its owner (`cancelVideo`); its credits were given back.")


_STATUS = {s: VideoStatus(s.value) for s in domain.VideoStatus}


@strawberry.enum(description="Why a video failed or was cancelled.")
class FailureCode(enum.Enum):
    CONTENT_POLICY = strawberry.enum_value("CONTENT_POLICY",
                                           description="The vendor refused the prompt or image (not retryable).")
    INVALID_INPUT = strawberry.enum_value("INVALID_INPUT",
                                          description="The vendor refused the parameters or image (not retryable).")
    PROVIDER_ERROR = strawberry.enum_value("PROVIDER_ERROR", description="The vendor failed for its own reasons.")
    PROVIDER_UNAVAILABLE = strawberry.enum_value(
        "PROVIDER_UNAVAILABLE", description="No vendor could take or finish it (overload, outage).")
    RESULT_UNAVAILABLE = strawberry.enum_value(
        "RESULT_UNAVAILABLE", description="Made, but the result could not be fetched or was not playable.")
    STORAGE_ERROR = strawberry.enum_value("STORAGE_ERROR", description="Made, but it could not be stored.")
    DEADLINE_EXCEEDED = strawberry.enum_value(
        "DEADLINE_EXCEEDED", description="Not finished by its deadline (`deadlineSeconds`, REST `Cancel-After`).")
    TIMEOUT = strawberry.enum_value("TIMEOUT", description="Not finished within this deployment's time limit.")
    CANCELLED = strawberry.enum_value("CANCELLED", description="Its owner cancelled (or deleted) it.")
    INTERNAL = strawberry.enum_value("INTERNAL", description="The gateway's own fault.")


_FAILURE = {c: FailureCode(c.value) for c in domain.FailureCode}


@strawberry.type(description="Why a video ended without a result.")
class Failure:
    code: FailureCode = strawberry.field(description="The reason, from a fixed taxonomy.")
    retryable: bool = strawberry.field(description="Whether the same request may succeed again (`retryVideo`).")
    message: str = strawberry.field(description="What happened, for people.")

    @classmethod
    def of(cls, v: domain.Video) -> Failure | None:
        """Null unless FAILED or CANCELLED (a FAILED video from before the taxonomy reads INTERNAL)."""
        if v.status is not domain.VideoStatus.FAILED and v.status is not domain.VideoStatus.CANCELLED:
            return None
        code = v.failure_code or domain.FailureCode.INTERNAL
        return cls(code=_FAILURE[code], retryable=code.retryable, message=v.error_message or code.value)
_iso = render.iso_timestamp
_FAILED, _CANCELLED = domain.VideoStatus.FAILED, domain.VideoStatus.CANCELLED


@strawberry.type(description="A video: what was asked for, where it stands, and the result once made.")
class Video:
    id: strawberry.ID = strawberry.field(
        description="Equal to `uuid`, so client caches normalise videos without configuration.")
    uuid: strawberry.ID = strawberry.field(description="The video's public identifier.")
    prompt: str = strawberry.field(description="The text the video was made from.")
    model: str = strawberry.field(description="The model's id (see `models`).")
    status: VideoStatus = strawberry.field(description="Where the video is in its life.")
    progress: int = strawberry.field(description="0 to 100; 100 once completed. Never goes down.")
    provider: str | None = strawberry.field(description="The provider making it, once one has taken it.")
    video_url: str | None = strawberry.field(description="The MP4, once completed.")
    thumbnail_url: str | None = strawberry.field(description="A JPEG still, once completed.")
    start_image_url: str | None = strawberry.field(description="The image it starts from (image-to-video).")
    duration: int = strawberry.field(description="Length in seconds.")
    resolution: str | None = strawberry.field(description="For example `720p`.")
    aspect_ratio: str = strawberry.field(description="For example `16:9`.")
    file_size: int | None = strawberry.field(description="Size of the MP4 in bytes, once completed.")
    credits_used: int = strawberry.field(description="The price in credits (frozen until it completes).")
    generation_time: int | None = strawberry.field(description="Seconds from request to completion.")
    created_at: str = strawberry.field(description="When it was requested (UTC ISO 8601, milliseconds, `Z`).")
    completed_at: str | None = strawberry.field(description="When it completed (same format as `createdAt`).")
    error_message: str | None = strawberry.field(description="Why it failed, when it failed.")
    failure: Failure | None = strawberry.field(
        description="Why it failed or was cancelled, with a code clients can branch on; null otherwise.")

    # A plain field, filled in by whoever builds the Video (``with_places``, ``placed``): a resolver
    # here would keep every list of videos that selects it off the fast path's compiled plans.
    queue_position: int | None = strawberry.field(
        default=None,
        description="While PENDING and not yet started: its place in this deployment's queue, "
                    "1 = started next (every user's first waiting video goes before anyone's "
                    "next, and a user's videos over their running cap wait their turn). "
                    "Null once started. `videoStatus` sends an event whenever it moves.")

    @classmethod
    def from_domain(cls, v: domain.Video) -> Video:
        # The instance's attribute dictionary given at once rather than through the dataclass __init__ (19
        # keyword arguments to bind): a page of 20 videos takes ~20 us less. The same object as
        # the constructor would make; test_from_domain_builds_what_the_constructor_builds keeps it so.
        video = object.__new__(cls)
        video.__dict__ = {
            "id": v.uuid, "uuid": v.uuid, "prompt": v.prompt, "model": v.model, "status": _STATUS[v.status],
            "progress": v.progress, "provider": v.provider, "video_url": v.video_url,
            "thumbnail_url": v.thumbnail_url, "start_image_url": v.start_image_url, "duration": v.duration,
            "resolution": v.resolution, "aspect_ratio": v.aspect_ratio, "file_size": v.file_size,
            "credits_used": v.credits_used, "generation_time": v.generation_time,
            "created_at": _iso(v.created_at_ms),
            "completed_at": None if v.completed_at_ms is None else _iso(v.completed_at_ms),
            "error_message": v.error_message,
            # Failure.of inline for the videos that did not end badly (most of a page): no call.
            "failure": Failure.of(v) if v.status is _FAILED or v.status is _CANCELLED else None,
            "queue_position": None}
        return video

    @classmethod
    def placed(cls, v: domain.Video, place: int | None) -> Video:
        """``from_domain`` with its queue place (None: not waiting, or started)."""
        video = cls.from_domain(v)
        video.queue_position = place
        return video


async def with_places(items: Sequence[domain.Video], info: Info[Context, None], *path: str) -> list[Video]:
    """The videos as GraphQL types, with their queue places if any waits and the selection asks for
    ``queuePosition`` at ``path`` below the resolving field: one read for them all, none otherwise."""
    built = [Video.from_domain(v) for v in items]
    waiting = [v.uuid for v in items if v.status is domain.VideoStatus.PENDING]
    # The selection is looked at only now: most pages hold no waiting video and never pay for it.
    if waiting and asks_for(info, *path, "queuePosition"):
        places = await service.queue_positions(waiting, deps=info.context.deps)
        for video in built:
            if video.status is VideoStatus.PENDING:
                video.queue_position = places.get(video.uuid)
    return built


@strawberry.type(description="A video's status alone: cheap to poll.")
class VideoTask:
    uuid: strawberry.ID = strawberry.field(description="The video's public identifier.")
    status: VideoStatus = strawberry.field(description="Where the video is in its life.")
    progress: int = strawberry.field(description="0 to 100; 100 once completed.")

    @classmethod
    def from_domain(cls, v: domain.Video) -> VideoTask:
        return cls(uuid=strawberry.ID(v.uuid), status=_STATUS[v.status], progress=v.progress)


@strawberry.type(description="One page of the caller's videos, newest first.")
class VideoPage:
    videos: list[Video] = strawberry.field(description="The videos on this page.")
    total: int = strawberry.field(description="How many videos the caller has in all.")
    page: int = strawberry.field(description="This page's number, from 1.")
    page_size: int = strawberry.field(description="Videos per page.")


@strawberry.type(description="The outcome of `deleteVideo`.")
class DeleteVideoResult:
    uuid: strawberry.ID = strawberry.field(description="The deleted video.")
    deleted: bool = strawberry.field(description="Always true: failures are errors.")


@strawberry.enum(description="What `cancelVideo` found.")
class CancelOutcome(enum.Enum):
    CANCELLED = strawberry.enum_value("CANCELLED", description="Cancelled, now or by an earlier request; "
                                                               "its credits were given back.")
    ALREADY_FINISHED = strawberry.enum_value("ALREADY_FINISHED",
                                             description="It had already completed or failed; nothing changed.")
    NOT_FOUND = strawberry.enum_value("NOT_FOUND", description="Unknown, deleted or not the caller's.")


@strawberry.type(description="The outcome of `cancelVideo`.")
class CancelResult:
    outcome: CancelOutcome = strawberry.field(description="What the cancel found.")
    video: Video | None = strawberry.field(description="The video as it is now; null when NOT_FOUND.")


@strawberry.input(description="What to make. The model decides which durations, ratios and qualities exist.")
class GenerateVideoInput:
    prompt: str = strawberry.field(description="What the video should show.")
    model: str = strawberry.field(description="A model id from `models`.")
    duration: int = strawberry.field(description="Seconds; one of the model's `durations`.")
    aspect_ratio: str = strawberry.field(description="One of the model's `aspectRatios`.")
    # UNSET rather than None: the contract has no default values here, only nullability.
    quality: str | None = strawberry.field(
        default=strawberry.UNSET, description="One of the model's `resolutions`; its first by default.")
    start_image_url: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="A public https URL of an image to start from (image-to-video models).")
    idempotency_key: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Retry-safe key (like REST's Idempotency-Key header): the same key with the same input "
                    "returns the first video instead of making another.")
    deadline_seconds: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="Stop the video if it has not finished this many seconds after it was accepted "
                    "(5 to 86400; like REST's Cancel-After): it ends FAILED with DEADLINE_EXCEEDED and its "
                    "credits are given back.")
    webhook_url: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="An https URL to POST this video's events to, signed with `webhookSigningSecret`.")
    webhook_events: list[WebhookEvent] | None = strawberry.field(
        default=strawberry.UNSET, description="Which events go to `webhookUrl`; all when omitted.")

    def as_request(self) -> dict[str, Any]:
        """The REST request body this input stands for, so both APIs hash a request alike."""
        raw: dict[str, Any] = {"prompt": self.prompt, "model": self.model, "duration": self.duration,
                               "aspectRatio": self.aspect_ratio}
        if isinstance(self.quality, str):
            raw["quality"] = self.quality
        if isinstance(self.start_image_url, str):
            raw["startImageUrl"] = self.start_image_url
        if isinstance(self.webhook_url, str):
            raw["webhookUrl"] = self.webhook_url
        if isinstance(self.webhook_events, list):
            raw["webhookEvents"] = event_names(self.webhook_events)
        return raw

    @property
    def key(self) -> str | None:
        return self.idempotency_key if isinstance(self.idempotency_key, str) else None

    @property
    def deadline(self) -> int | None:
        return self.deadline_seconds if isinstance(self.deadline_seconds, int) else None


GenerateInputArg = Annotated[GenerateVideoInput, strawberry.argument(description="What to make.")]


@strawberry.type
class VideoQueries:
    @strawberry.field(description="The caller's videos, newest first (deleted ones excluded).")
    async def videos(self, info: Info[Context, None], page: PageArg = 1,
                     page_size: PageSizeArg = 20) -> VideoPage:
        principal = await info.context.principal()
        paging = page_of(page, page_size)
        items, total = await service.list_videos(principal, paging, deps=info.context.deps)
        return VideoPage(videos=await with_places(items, info, "videos"), total=total, page=paging.page,
                         page_size=paging.page_size)

    @strawberry.field(description="The exact credits `generateVideo` would charge for this input, checked as it "
                                  "checks it (same errors); nothing is frozen.")
    async def price(self, info: Info[Context, None], input: GenerateInputArg) -> int:
        principal = await info.context.principal()
        return await service.quote_price(input.as_request(), principal, idempotency_key=input.key,
                                         deps=info.context.deps)

    @strawberry.field(description="One of the caller's videos; null when unknown, deleted or not theirs.")
    async def video(self, info: Info[Context, None], uuid: UuidArg) -> Video | None:
        video = await service.find_video(uuid, await info.context.principal(), deps=info.context.deps)
        return None if video is None else (await with_places([video], info))[0]

    @strawberry.field(description="A video's status alone; null when unknown, deleted or not the caller's.")
    async def video_task(self, info: Info[Context, None], uuid: UuidArg) -> VideoTask | None:
        video = await service.find_video(uuid, await info.context.principal(), deps=info.context.deps)
        return None if video is None else VideoTask.from_domain(video)


@strawberry.type
class VideoMutations:
    @strawberry.mutation(description="Freeze the price and queue a video. Follow it with `videoStatus`.")
    async def generate_video(self, info: Info[Context, None], input: GenerateInputArg) -> Video:
        principal = await info.context.principal()
        await check_generate(info.context.connection.scope, principal)
        result = await service.generate_video(input.as_request(), principal, idempotency_key=input.key,
                                              deadline_seconds=input.deadline, deps=info.context.deps)
        return (await with_places([result.video], info))[0]

    @strawberry.mutation(description="Stop one of the caller's videos: it ends CANCELLED and is never charged "
                                     "(its credits are given back). Idempotent.")
    async def cancel_video(self, info: Info[Context, None], uuid: UuidArg) -> CancelResult:
        result = await service.cancel_video(uuid, await info.context.principal(), deps=info.context.deps)
        return CancelResult(outcome=CancelOutcome(result.outcome.value),
                            # terminal (cancelled or already finished): no queue place to read
                            video=None if result.video is None else Video.from_domain(result.video))

    @strawberry.mutation(description="Make a failed or cancelled video again with the same parameters (a new "
                                     "video and a new charge); BAD_USER_INPUT when its failure is not retryable.")
    async def retry_video(self, info: Info[Context, None], uuid: UuidArg) -> Video:
        result = await service.retry_video(uuid, await info.context.principal(), deps=info.context.deps)
        return (await with_places([result.video], info))[0]

    @strawberry.mutation(
        description="Delete one of the caller's videos (one still in flight is cancelled first and never paid).")
    async def delete_video(self, info: Info[Context, None], uuid: UuidArg) -> DeleteVideoResult:
        deleted = await service.delete_video(uuid, await info.context.principal(), deps=info.context.deps)
        return DeleteVideoResult(uuid=strawberry.ID(deleted), deleted=True)


@strawberry.type
class VideoSubscriptions:
    @strawberry.subscription(description="The video now, then once per change of status or progress, and "
                                         "while it waits, per move of its `queuePosition` if the selection "
                                         "shows it; completes after COMPLETED, FAILED or CANCELLED.")
    async def video_status(self, info: Info[Context, None], uuid: UuidArg) -> AsyncIterable[Video]:
        # Authorised before the stream starts, so NOT_FOUND ends only this operation, cleanly.
        context = info.context
        principal = await context.principal()
        video = await service.get_video(uuid, principal, deps=context.deps)
        # Places are read, and their moves sent, only for a selection that shows them: to any
        # other, a move would be an event identical to the one before.
        return VideoStream(video.uuid, principal, context.deps, places=asks_for(info, "queuePosition"))


class VideoStream:
    """The source of one ``videoStatus`` subscription, authorised: whose and which video.

    Strawberry iterates it (services/following.py's ``follow`` decides what is sent); the
    WebSocket fast path's lean subscribers (ws/subscribers.py) read ``uuid`` and apply the same
    rules to the changes the fan-out hands them, without ever starting it.
    """

    __slots__ = ("deps", "places", "principal", "uuid")

    def __init__(self, uuid: str, principal: Principal, deps: Deps, *, places: bool = True) -> None:
        self.uuid = uuid
        self.principal = principal
        self.deps = deps
        self.places = places  # whether the selection shows ``queuePosition``

    async def __aiter__(self) -> AsyncIterator[Video]:
        async for video, place in following.follow(self.uuid, self.principal, deps=self.deps, places=self.places):
            yield Video.placed(video, place)
