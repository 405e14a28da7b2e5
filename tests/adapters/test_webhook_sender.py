"""Sending one webhook: signed per Standard Webhooks (checked with the official package), every
secret of a rotation, redirects not followed, the response kept to 1 KB, and the SSRF rules."""

from __future__ import annotations

import ipaddress

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from kensa_gql.adapters.fetcher import Resolver
from kensa_gql.adapters.webhook_sender import WebhookSender, WebhookUrlGuard
from kensa_gql.domain.errors import BadUserInput
from kensa_gql.domain.urls import IPAddress
from kensa_gql.domain.webhooks import new_secret
from tests.webhook_receiver import Receiver

PAYLOAD = '{"type":"video.completed","timestamp":"2026-12-03T12:00:00.000Z","data":{"uuid":"u"}}'


def local_sender() -> WebhookSender:
    return WebhookSender(WebhookUrlGuard(allow_http=True, allow_private=True), timeout=2.0)


async def test_a_delivery_verifies_with_both_secrets_during_a_rotation() -> None:
    receiver = Receiver()
    url = await receiver.start()
    new, old = new_secret(), new_secret()
    try:
        attempt = await local_sender().send(url + "/hook", event_id="msg_1", payload=PAYLOAD, secrets=[new, old])
    finally:
        await receiver.stop()
    assert attempt.ok and attempt.status_code == 200 and attempt.response == "ok"
    got = receiver.received[0]
    assert got.headers["webhook-id"] == "msg_1" and got.body.decode() == PAYLOAD
    assert got.headers["webhook-signature"].count("v1,") == 2
    assert got.verify(new) == got.verify(old) == {"type": "video.completed",
                                                   "timestamp": "2026-12-03T12:00:00.000Z", "data": {"uuid": "u"}}
    with pytest.raises(WebhookVerificationError):
        got.verify(new_secret())  # anyone else's secret does not
    with pytest.raises(WebhookVerificationError):  # nor does a replay outside the 5-minute tolerance
        Webhook(new).verify(got.body, {**got.headers, "webhook-timestamp": str(int(got.headers["webhook-timestamp"])
                                                                              - 600)})


async def test_a_redirect_is_a_failed_attempt_and_is_not_followed() -> None:
    receiver = Receiver(answers=[302, 500])
    url = await receiver.start()
    try:
        redirected = await local_sender().send(url, event_id="msg_2", payload=PAYLOAD, secrets=[new_secret()])
        failed = await local_sender().send(url, event_id="msg_2", payload=PAYLOAD, secrets=[new_secret()])
    finally:
        await receiver.stop()
    assert not redirected.ok and redirected.status_code == 302
    assert len(receiver.received) == 2  # the Location was never visited
    assert failed.status_code == 500 and failed.response is not None and len(failed.response) == 1024


async def test_an_unreachable_receiver_is_a_failed_attempt_not_an_exception() -> None:
    receiver = Receiver()
    url = await receiver.start()
    await receiver.stop()
    attempt = await local_sender().send(url, event_id="msg_3", payload=PAYLOAD, secrets=[new_secret()])
    assert not attempt.ok and attempt.status_code is None and attempt.error


def resolving_to(address: str) -> Resolver:
    async def resolver(_host: str, _port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(address)]
    return resolver


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/hook",                  # loopback
    "https://[::1]/hook",
    "https://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
    "https://10.0.0.7/hook",                   # private
    "https://192.168.1.2/hook",
    "https://2130706433/hook",                 # 127.0.0.1 spelled as a number
    "https://localhost/hook",
    "http://hooks.example.com/hook",           # plain http
    "https://user:pw@hooks.example.com/hook",  # credentials
    "ftp://hooks.example.com/hook",
])
async def test_inward_or_unsafe_webhook_urls_are_refused(url: str) -> None:
    guard = WebhookUrlGuard(resolver=resolving_to("93.184.216.34"))
    with pytest.raises(BadUserInput):
        await guard.check(url)


@pytest.mark.parametrize("inward", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::ffff:127.0.0.1"])
async def test_a_name_resolving_inward_is_refused_at_creation_and_at_send(inward: str) -> None:
    guard = WebhookUrlGuard(resolver=resolving_to(inward))
    with pytest.raises(BadUserInput, match="private, loopback or reserved"):
        await guard.check("https://hooks.example.com/hook")
    attempt = await WebhookSender(guard).send("https://hooks.example.com/hook", event_id="msg_4", payload=PAYLOAD,
                                              secrets=[new_secret()])
    assert not attempt.ok and attempt.error is not None and attempt.error.startswith("refused")


async def test_a_public_https_url_passes_and_the_development_settings_open_the_rest() -> None:
    await WebhookUrlGuard(resolver=resolving_to("93.184.216.34")).check("https://hooks.example.com/hook")
    relaxed = WebhookUrlGuard(allow_http=True, allow_private=True, resolver=resolving_to("127.0.0.1"))
    await relaxed.check("http://127.0.0.1:9999/hook")
    await relaxed.check("http://hooks.example.com/hook")


async def test_the_development_setting_admits_localhost_but_keeps_the_form_rules() -> None:
    relaxed = WebhookUrlGuard(allow_http=True, allow_private=True, resolver=resolving_to("127.0.0.1"))
    await relaxed.check("http://localhost:8080/hook")
    with pytest.raises(BadUserInput, match="credentials"):
        await relaxed.check("http://user:pw@localhost:8080/hook")
