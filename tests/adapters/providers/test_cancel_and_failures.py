"""Each adapter's cancel call (the exact request its vendor documents) and its failure codes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kensa_gql.domain.errors import ContentRejected
from kensa_gql.domain.ports import Cancellable, JobState
from kensa_gql.domain.videos import FailureCode
from tests.adapters.providers.conftest import Wired
from tests.adapters.providers.test_vendor_statuses import VENDORS, job_for, run_to_end
from tests.emulators.common import NEVER, POLICY, RETRYABLE, Reply
from tests.emulators.fixtures import KEYS

# The documented cancel request of each vendor that has one: method, path (task id filled in), auth header.
CANCELS = {
    "dashscope": ("POST", "/api/v1/tasks/{id}/cancel", ("authorization", f"Bearer {KEYS['dashscope']}")),
    "ark": ("DELETE", "/api/v3/contents/generations/tasks/{id}", ("authorization", f"Bearer {KEYS['ark']}")),
    "gemini": ("POST", "/v1beta/{id}:cancel", ("x-goog-api-key", KEYS["gemini"])),
}


@pytest.mark.parametrize("vendor", sorted(CANCELS))
async def test_a_queued_task_is_cancelled_with_the_vendors_own_call(wire: Callable[..., Wired], vendor: str) -> None:
    wired = wire(vendor)
    wired.emulator.script.generation_seconds = 600  # queued for two minutes
    provider = wired.provider
    assert isinstance(provider, Cancellable)
    job = job_for(vendor)
    task_id = await provider.submit(job)
    # when the gateway cancels it
    assert await provider.cancel(task_id, job) is True
    # then exactly the documented request went out, once, with the key in its header
    method, path, (header, value) = CANCELS[vendor]
    sent = wired.emulator.seen[-1]
    assert (sent.method, sent.path) == (method, path.format(id=task_id))
    assert sent.headers[header] == value and sent.query == ""
    # and the vendor reports the task over, never as a success
    status = await provider.poll(task_id, job)
    assert status.state is JobState.FAILED


@pytest.mark.parametrize("vendor", sorted(CANCELS))
async def test_a_task_the_vendor_cannot_cancel_any_more_answers_false(wire: Callable[..., Wired],
                                                                    vendor: str) -> None:
    wired = wire(vendor)
    wired.emulator.script.generation_seconds = 0.0  # finished at once
    provider = wired.provider
    assert isinstance(provider, Cancellable)
    job = job_for(vendor)
    task_id = await provider.submit(job)
    if vendor == "ark":  # Ark deletes a finished task's record instead; a running one is refused
        wired.emulator.script.generation_seconds = 1.0
        wired.emulator.script.outcome = NEVER
        task_id = await provider.submit(job)
        wired.emulator.tasks[task_id].created -= 10  # long past its queue time: running
    assert await provider.cancel(task_id, job) is False


@pytest.mark.parametrize("vendor", ["openai", "evolink"])
async def test_vendors_without_a_documented_cancel_have_none(wire: Callable[..., Wired], vendor: str) -> None:
    # The gateway only stops polling them and discards a late result (runner, services/videos.py).
    assert not isinstance(wire(vendor).provider, Cancellable)


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_content_policy_failure_is_coded_content_policy(wire: Callable[..., Wired], vendor: str) -> None:
    wired = wire(vendor)
    wired.emulator.script.generation_seconds = 0.0
    wired.emulator.script.outcome = POLICY
    _, done = await run_to_end(wired, vendor)
    assert done.state is JobState.FAILED and done.failure is FailureCode.CONTENT_POLICY
    assert not done.failure.retryable


@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_passing_failure_is_coded_provider_unavailable(wire: Callable[..., Wired], vendor: str) -> None:
    wired = wire(vendor)
    wired.emulator.script.generation_seconds = 0.0
    wired.emulator.script.outcome = RETRYABLE
    _, done = await run_to_end(wired, vendor)
    assert done.failure is FailureCode.PROVIDER_UNAVAILABLE and done.failure.retryable


@pytest.mark.parametrize(("vendor", "refusal", "code"), [
    ("dashscope", Reply(400, {"code": "DataInspectionFailed", "message": "Input data may contain inappropriate "
                                                                          "content.", "request_id": "r"}),
     FailureCode.CONTENT_POLICY),
    ("dashscope", Reply(400, {"code": "InvalidParameter", "message": "size is invalid", "request_id": "r"}),
     FailureCode.INVALID_INPUT),
    ("ark", Reply(400, {"error": {"code": "InputTextSensitiveContentDetected",
                                  "message": "The input text may contain sensitive information."}}),
     FailureCode.CONTENT_POLICY),
    ("ark", Reply(400, {"error": {"code": "InvalidParameter", "message": "ratio is invalid"}}),
     FailureCode.INVALID_INPUT),
    ("openai", Reply(400, {"error": {"message": "Your request was blocked by our moderation system.",
                                     "type": "invalid_request_error", "code": "moderation_blocked"}}),
     FailureCode.CONTENT_POLICY),
    ("openai", Reply(400, {"error": {"message": "Inpaint image must match the requested size",
                                     "type": "invalid_request_error", "param": "input_reference", "code": None}}),
     FailureCode.INVALID_INPUT),
    ("evolink", Reply(400, {"error": {"code": "content_policy_violation", "message": "rejected",
                                      "type": "content_policy_error"}}), FailureCode.CONTENT_POLICY),
    ("evolink", Reply(400, {"error": {"code": 400, "message": "image_urls: image too small",
                                      "type": "invalid_request_error", "param": "image_urls"}}),
     FailureCode.INVALID_INPUT),
    ("gemini", Reply(400, {"error": {"code": 400, "message": "durationSeconds is out of range",
                                     "status": "INVALID_ARGUMENT"}}), FailureCode.INVALID_INPUT),
])
async def test_a_refused_submission_carries_its_failure_code(wire: Callable[..., Wired], vendor: str,
                                                              refusal: Reply, code: FailureCode) -> None:
    wired = wire(vendor)
    wired.emulator.script.create_replies = [refusal]
    with pytest.raises(ContentRejected) as caught:
        await wired.provider.submit(job_for(vendor))
    assert caught.value.failure is code


@pytest.mark.parametrize("vendor", ["dashscope", "ark", "gemini", "evolink"])
async def test_a_success_without_a_result_is_coded_result_unavailable(wire: Callable[..., Wired],
                                                                      vendor: str) -> None:
    wired = wire(vendor)
    wired.emulator.script.generation_seconds = 0.0
    empty = {"dashscope": {"request_id": "r", "output": {"task_id": "x", "task_status": "SUCCEEDED"}},
             "ark": {"id": "x", "status": "succeeded", "content": {}},
             "gemini": {"name": "models/veo-3.1-generate-preview/operations/x", "done": True,
                        "response": {"generateVideoResponse": {}}},
             "evolink": {"id": "x", "status": "completed", "results": []}}[vendor]
    job = job_for(vendor)
    task_id = await wired.provider.submit(job)
    wired.emulator.script.poll_replies = [Reply(200, empty)]
    status = await wired.provider.poll(task_id, job)
    assert status.state is JobState.FAILED and status.failure is FailureCode.RESULT_UNAVAILABLE
