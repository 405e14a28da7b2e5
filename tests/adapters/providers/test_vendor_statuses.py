"""Each adapter against its emulator: statuses, results, progress, and every kind of failure."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from kensa_gql.adapters.downloads import download
from kensa_gql.adapters.providers.http import RetryPolicy
from kensa_gql.domain.errors import ContentRejected, ProviderError, ProviderUnavailable
from kensa_gql.domain.ports import JobState, JobStatus, ProviderJob
from tests.adapters.providers.conftest import Wired
from tests.emulators.common import NEVER, POLICY, RETRYABLE, Reply
from tests.emulators.fixtures import KEYS

VENDORS = ["evolink", "gemini", "dashscope", "ark", "openai"]
MODEL = {"evolink": "seedance-1-5", "gemini": "veo-3-1", "dashscope": "wan-2-6", "ark": "seedance-1-5",
         "openai": "sora-2"}
HAS_PROGRESS = {"evolink", "openai"}


def job_for(vendor: str) -> ProviderJob:
    duration = {"veo-3-1": 8, "wan-2-6": 5}.get(MODEL[vendor], 8)
    return ProviderJob(video_uuid="0b8e0c4e-1f4e-4a57-8d0e-5b7d9c3f2a10", model=MODEL[vendor],
                       prompt="a red kite",
                       duration=duration, resolution="720p", aspect_ratio="16:9")


async def run_to_end(wired: Wired, vendor: str) -> tuple[list[JobStatus], JobStatus]:
    the_job = job_for(vendor)
    task_id = await wired.provider.submit(the_job)
    seen: list[JobStatus] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = await wired.provider.poll(task_id, the_job)
        if status.state in (JobState.SUCCEEDED, JobState.FAILED):
            return seen, status
        seen.append(status)
        await asyncio.sleep(0.01)
    raise AssertionError("the emulated task never finished")


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_finished_task_yields_a_downloadable_mp4(wire: Callable[..., Wired], vendor: str,
                                                        tmp_path: Path, sample_bytes: bytes) -> None:
    wired = wire(vendor)
    wired.emulator.script.generation_seconds = 0.15
    running, done = await run_to_end(wired, vendor)
    assert running and all(s.state in (JobState.QUEUED, JobState.RUNNING) for s in running)
    if vendor in HAS_PROGRESS:
        assert any(s.progress is not None and s.progress > 0 for s in running)
    else:  # no progress field: the runner estimates
        assert all(s.progress is None for s in running)
    assert done.state is JobState.SUCCEEDED and done.result is not None and done.result.url is not None
    # Only vendors whose file needs the key get it, and only in a header.
    if vendor == "openai":
        assert done.result.headers["Authorization"] == f"Bearer {KEYS['openai']}"
    elif vendor == "gemini":
        assert done.result.headers == {"x-goog-api-key": KEYS["gemini"]}
    else:
        assert done.result.headers == {}
    assert KEYS[vendor] not in done.result.url
    path = await download(wired.http, done.result.url, headers=done.result.headers, max_bytes=10_000_000,
                          work_dir=tmp_path)
    assert path.read_bytes() == sample_bytes


async def test_gemini_file_redirect_never_carries_the_key_to_the_signed_host(wire: Callable[..., Wired],
                                                                            tmp_path: Path) -> None:
    wired = wire("gemini")
    wired.emulator.script.generation_seconds = 0.0
    _, done = await run_to_end(wired, "gemini")
    assert done.result is not None and done.result.url is not None
    await download(wired.http, done.result.url, headers=done.result.headers, max_bytes=10_000_000,
                   work_dir=tmp_path)
    [signed] = wired.emulator.signed_downloads
    assert "x-goog-api-key" not in signed  # the redirect left the API origin, so the key stayed behind


async def test_gemini_key_is_not_attached_to_a_result_uri_on_another_origin(
        wire: Callable[..., Wired]) -> None:
    wired = wire("gemini")
    operation = {"name": "models/veo-3.1-generate-preview/operations/x", "done": True, "response": {
        "generateVideoResponse": {"generatedSamples": [{"video": {"uri": "https://elsewhere.example/v.mp4"}}]}}}
    status = wired.provider.status_of(operation, job_for("gemini"))  # type: ignore[attr-defined]
    assert status.state is JobState.SUCCEEDED and status.result is not None
    assert status.result.headers == {}


async def test_gemini_inline_video_is_written_to_a_file(wire: Callable[..., Wired],
                                                        sample_bytes: bytes) -> None:
    wired = wire("gemini")
    encoded = base64.b64encode(sample_bytes).decode()
    sample = {"video": {"encodedVideo": encoded}}
    operation = {"name": "models/m/operations/x", "done": True,
                 "response": {"generateVideoResponse": {"generatedSamples": [sample]}}}
    status = wired.provider.status_of(operation, job_for("gemini"))  # type: ignore[attr-defined]
    assert status.result is not None and status.result.path is not None
    assert status.result.path.read_bytes() == sample_bytes


@pytest.mark.parametrize(("vendor", "message"), [
    ("evolink", "content_policy_violation"),
    ("gemini", "blocked by safety filters"),
    ("dashscope", "DataInspectionFailed"),
    ("ark", "OutputVideoSensitiveContentDetected"),
    ("openai", "moderation_blocked"),
])
async def test_a_content_policy_failure_is_final_and_keeps_the_vendor_message(
        wire: Callable[..., Wired], vendor: str, message: str) -> None:
    wired = wire(vendor)
    wired.emulator.script.generation_seconds = 0.0
    wired.emulator.script.outcome = POLICY
    _, done = await run_to_end(wired, vendor)
    assert done.state is JobState.FAILED and not done.retryable
    assert done.error is not None and message in done.error and done.error.startswith(vendor)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_passing_task_failure_is_marked_retryable(wire: Callable[..., Wired], vendor: str) -> None:
    wired = wire(vendor)
    wired.emulator.script.generation_seconds = 0.0
    wired.emulator.script.outcome = RETRYABLE
    _, done = await run_to_end(wired, vendor)
    assert done.state is JobState.FAILED and done.retryable


@pytest.mark.parametrize("vendor", VENDORS)
async def test_an_invalid_request_is_rejected_with_the_vendor_message(wire: Callable[..., Wired],
                                                                     vendor: str) -> None:
    wired = wire(vendor)
    refusal = {"evolink": Reply(400, {"error": {"code": 400, "message": "image_urls: image too small",
                                                "type": "invalid_request_error", "param": "image_urls"}}),
               "gemini": Reply(400,
                               {"error": {"code": 400,
                                          "message": "Unsupported prompt: it may violate our policies",
                                               "status": "INVALID_ARGUMENT"}}),
               "dashscope": Reply(400, {"code": "DataInspectionFailed", "message": "Input data may contain "
                                        "inappropriate content.", "request_id": "r"}),
               "ark": Reply(400, {"error": {"code": "InputTextSensitiveContentDetected",
                                            "message": "The input text may contain sensitive information."}}),
               "openai": Reply(400,
                               {"error": {"message": "Inpaint image must match the requested size",
                                          "type": "invalid_request_error", "param": "input_reference",
                                               "code": None}})}[vendor]
    wired.emulator.script.create_replies = [refusal]
    with pytest.raises(ContentRejected) as caught:
        await wired.provider.submit(job_for(vendor))
    assert caught.value.message.startswith(vendor)
    assert "HTTP 400" in caught.value.message
    assert len(wired.emulator.seen) == 1  # a refusal is not retried


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_wrong_key_makes_the_provider_unavailable_not_the_content_rejected(
        wire: Callable[..., Wired], vendor: str) -> None:
    wired = wire(vendor)
    wired.emulator.key = "a-different-key"
    with pytest.raises(ProviderUnavailable) as caught:
        await wired.provider.submit(job_for(vendor))
    assert KEYS[vendor] not in caught.value.message
    assert len(wired.emulator.seen) == 1  # auth failures are not retried, they fail over


@pytest.mark.parametrize("vendor", VENDORS)
async def test_429_then_success_creates_exactly_one_task(wire: Callable[..., Wired], vendor: str) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    wired = wire(vendor)
    wired.provider._api._sleep = sleep  # type: ignore[attr-defined]
    wired.emulator.script.create_replies = [Reply(429,
                                                  {"error": {"code": 429, "message": "Rate limit exceeded",
                                                                  "type": "rate_limit_error"}},
                                                  headers={"Retry-After": "7"})]
    task_id = await wired.provider.submit(job_for(vendor))
    assert task_id
    assert len(wired.emulator.tasks) == 1
    assert len(slept) == 1 and 7 <= slept[0] <= 8  # Retry-After honoured, a little jitter on top


@pytest.mark.parametrize("vendor", VENDORS)
async def test_5xx_is_retried_then_reported_unavailable(wire: Callable[..., Wired], vendor: str) -> None:
    wired = wire(vendor)
    wired.emulator.script.create_replies = [Reply(503, {"error": {"message": "busy"}})] * 3
    with pytest.raises(ProviderUnavailable):
        await wired.provider.submit(job_for(vendor))
    assert len(wired.emulator.seen) == 3  # bounded: three calls in all
    assert wired.emulator.tasks == {}


@pytest.mark.parametrize("vendor", VENDORS)
async def test_polling_survives_a_5xx(wire: Callable[..., Wired], vendor: str) -> None:
    wired = wire(vendor)
    wired.emulator.script.generation_seconds = 0.0
    task_id = await wired.provider.submit(job_for(vendor))
    wired.emulator.script.poll_replies = [Reply(502, b"Bad Gateway")]
    status = await wired.provider.poll(task_id, job_for(vendor))
    assert status.state is JobState.SUCCEEDED


@pytest.mark.parametrize("vendor", ["evolink", "ark", "openai", "gemini"])
async def test_polling_a_task_the_vendor_no_longer_knows_is_final(wire: Callable[..., Wired],
                                                                  vendor: str) -> None:
    wired = wire(vendor)
    unknown = "models/veo-3.1-generate-preview/operations/op999999" if vendor == "gemini" else "video_missing"
    with pytest.raises(ProviderError) as caught:
        await wired.provider.poll(unknown, job_for(vendor))
    assert not caught.value.retryable


async def test_dashscope_unknown_task_fails() -> None:
    from kensa_gql.adapters.providers.dashscope import DashScopeProvider

    async with httpx.AsyncClient() as http:
        provider = DashScopeProvider(http, api_key="k", base_url="http://x", poll_interval=1)
        assert provider.status_of({"output": {"task_status": "UNKNOWN"}}).state is JobState.FAILED
        assert provider.status_of({"output": {"task_status": "CANCELED"}}).state is JobState.FAILED
        assert provider.status_of({"output": {"task_status": "SOMETHING_NEW"}}).state is JobState.RUNNING


async def test_ark_expired_is_retryable_and_unknown_statuses_keep_polling() -> None:
    from kensa_gql.adapters.providers.ark import ArkProvider

    async with httpx.AsyncClient() as http:
        provider = ArkProvider(http, api_key="k", base_url="http://x", poll_interval=1)
        expired = provider.status_of({"status": "expired"})
        assert expired.state is JobState.FAILED and expired.retryable
        assert provider.status_of({"status": "cancelled"}).state is JobState.FAILED
        assert provider.status_of({"status": "processing"}).state is JobState.RUNNING


async def test_evolink_cancelled_fails_and_success_without_result_is_retryable() -> None:
    from kensa_gql.adapters.providers.evolink import EvolinkProvider

    async with httpx.AsyncClient() as http:
        provider = EvolinkProvider(http, api_key="k", base_url="http://x", poll_interval=1)
        assert provider.status_of({"status": "cancelled"}).state is JobState.FAILED
        empty = provider.status_of({"status": "completed", "results": []})
        assert empty.state is JobState.FAILED and empty.retryable
        via_data = provider.status_of({"status": "completed",
                                       "result_data": [{"video_url": "https://c/v.mp4"}]})
        assert via_data.result is not None and via_data.result.url == "https://c/v.mp4"
        local = provider.status_of({"status": "completed", "results": ["file:///etc/passwd"]})
        assert local.state is JobState.FAILED  # only http(s) results are ever downloaded


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_slow_task_keeps_running(wire: Callable[..., Wired], vendor: str) -> None:
    wired = wire(vendor)
    wired.emulator.script.generation_seconds = 0.0
    wired.emulator.script.outcome = NEVER
    task_id = await wired.provider.submit(job_for(vendor))
    for _ in range(3):
        status = await wired.provider.poll(task_id, job_for(vendor))
        assert status.state in (JobState.QUEUED, JobState.RUNNING)


async def test_connection_failures_are_retried_then_unavailable(tmp_path: Path) -> None:
    from tests.adapters.providers.conftest import make_provider

    calls = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        provider = make_provider("ark", http, work_dir=tmp_path,
                                 policy=RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0))
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.submit(job_for("ark"))
    assert calls == 2 and "ConnectError" in caught.value.message
