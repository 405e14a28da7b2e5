"""The shared vendor HTTP helper: bounded retries, backoff with jitter, Retry-After, redaction."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

import httpx
import pytest

from kensa_gql.adapters.providers.http import RetryPolicy, VendorHttp, error_text, retry_after_seconds
from kensa_gql.domain.errors import ContentRejected, ProviderError, ProviderUnavailable

SECRET = "sk-super-secret-value-123"


def vendor(handler: Callable[[httpx.Request], httpx.Response], slept: list[float], *,
           policy: RetryPolicy | None = None, rng: float = 0.5) -> tuple[VendorHttp, httpx.AsyncClient]:
    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return VendorHttp(http, vendor="acme", base_url="https://api.acme.test/",
                      headers={"Authorization": SECRET},
                      secret=SECRET, policy=policy, sleep=sleep, rng=lambda: rng), http


def answers(*responses: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    queue = list(responses)

    def handler(_request: httpx.Request) -> httpx.Response:
        return queue.pop(0)

    return handler


async def test_backoff_doubles_with_jitter_and_is_bounded() -> None:
    slept: list[float] = []
    api, http = vendor(answers(*[httpx.Response(500)] * 4), slept,
                       policy=RetryPolicy(attempts=4, base_delay=1.0, max_delay=3.0), rng=1.0)
    async with http:
        with pytest.raises(ProviderUnavailable) as caught:
            await api.send("GET", "/v1/x")
    # Equal jitter: half the ceiling plus up to half again; ceilings 1, 2, then capped at 3.
    assert slept == [1.0, 2.0, 3.0]
    assert "HTTP 500" in caught.value.message and caught.value.retry_after is None


async def test_jitter_spreads_the_delay_between_half_and_full_ceiling() -> None:
    slept: list[float] = []
    api, http = vendor(answers(httpx.Response(503), httpx.Response(200, json={})), slept,
                       policy=RetryPolicy(base_delay=2.0), rng=0.0)
    async with http:
        assert (await api.send("GET", "/v1/x")).status_code == 200
    assert slept == [1.0]


async def test_retry_after_seconds_is_honoured() -> None:
    slept: list[float] = []
    api, http = vendor(answers(httpx.Response(429, headers={"Retry-After": "5"}),
                               httpx.Response(200, json={})),
                       slept, rng=0.0)
    async with http:
        assert (await api.send("POST", "/v1/x", json={})).status_code == 200
    assert slept == [5.0]


async def test_a_long_retry_after_is_handed_to_the_runner_instead_of_slept() -> None:
    slept: list[float] = []
    api, http = vendor(answers(httpx.Response(429, headers={"Retry-After": "600"})), slept)
    async with http:
        with pytest.raises(ProviderUnavailable) as caught:
            await api.send("POST", "/v1/x", json={})
    assert slept == [] and caught.value.retry_after == 600


def test_retry_after_accepts_http_dates_and_ignores_garbage() -> None:
    now = time.time()
    later = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds(later, now=now) == pytest.approx(30, abs=1)
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("-3") == 0


async def test_client_errors_are_returned_not_retried() -> None:
    slept: list[float] = []
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(400, json={"error": {"message": "bad prompt"}})

    api, http = vendor(handler, slept)
    async with http:
        response = await api.send("POST", "/v1/x", json={})
    assert response.status_code == 400 and len(calls) == 1 and slept == []


async def test_final_marks_a_429_that_waiting_cannot_fix() -> None:
    slept: list[float] = []
    api, http = vendor(answers(httpx.Response(429, json={"error": {"code": "insufficient_quota"}})), slept)
    async with http:
        response = await api.send("POST", "/v1/x", json={}, final=lambda r: True)
    assert response.status_code == 429 and slept == []


async def test_the_key_never_appears_in_error_messages() -> None:
    echo = {"error": {"message": f"Incorrect API key provided: {SECRET}"}}
    api, http = vendor(answers(*[httpx.Response(500, json=echo)] * 3), [])
    async with http:
        with pytest.raises(ProviderUnavailable) as caught:
            await api.send("GET", "/v1/x")
        assert SECRET not in caught.value.message and "[redacted]" in caught.value.message
        assert SECRET not in api.failure(httpx.Response(401, json=echo), polling=False).message


@pytest.mark.parametrize(("status", "polling", "kind"), [
    (400, False, ContentRejected), (413, False, ContentRejected), (422, False, ContentRejected),
    (401, False, ProviderUnavailable), (402, False, ProviderUnavailable), (403, True, ProviderUnavailable),
    (404, False, ProviderUnavailable), (404, True, ProviderError),
])
async def test_failure_classifies_client_errors(status: int, polling: bool,
                                                kind: type[ProviderError]) -> None:
    api, http = vendor(answers(), [])
    async with http:
        failure = api.failure(httpx.Response(status, json={"error": {"message": "nope"}}), polling=polling)
    assert type(failure) is kind and "nope" in failure.message


async def test_a_quota_code_on_a_400_fails_over() -> None:
    api, http = vendor(answers(), [])
    async with http:
        failure = api.failure(httpx.Response(400, json={"code": "Arrearage", "message": "account overdue"}),
                              polling=False, unavailable_codes=("Arrearage",))
    assert isinstance(failure, ProviderUnavailable)


async def test_a_non_json_answer_is_a_vendor_outage() -> None:
    api, http = vendor(answers(), [])
    async with http:
        with pytest.raises(ProviderUnavailable):
            api.json(httpx.Response(200, text="<html>maintenance</html>"))


def test_error_text_reads_every_documented_envelope() -> None:
    assert error_text({"error": {"code": 429, "message": "Rate limit exceeded",
                                 "type": "rate_limit_error"}}) \
        == "Rate limit exceeded"
    assert error_text({"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}) \
        == "INVALID_ARGUMENT: bad"
    assert error_text({"code": "InvalidParameter", "message": "size",
                       "request_id": "r"}) == "InvalidParameter: size"
    assert error_text({"error": {"code": "InvalidParameter",
                                 "message": "ratio"}}) == "InvalidParameter: ratio"
    assert error_text({"error": "plain"}) == "plain"
    assert error_text([]) is None
