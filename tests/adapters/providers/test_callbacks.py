"""Per-task callback URLs: https only, unguessable, per provider and per video."""

from __future__ import annotations

from kensa_gql.adapters.providers.callbacks import CallbackUrls

UUID = "4a9f3e1c-2b7d-4c55-9e0a-7d1b2c3e4f50"


def test_only_an_https_public_url_gets_callbacks() -> None:
    assert CallbackUrls("http://gw.example.com", {"evolink": "k"}).url_for("evolink", UUID) is None
    url = CallbackUrls("https://gw.example.com/", {"evolink": "k"}).url_for("evolink", UUID)
    assert url is not None and url.startswith(f"https://gw.example.com/webhooks/evolink/{UUID}/")


def test_the_token_verifies_only_for_its_provider_and_video() -> None:
    urls = CallbackUrls("https://gw.example.com", {"evolink": "key-one", "ark": "key-two"})
    url = urls.url_for("evolink", UUID)
    assert url is not None
    token = url.rsplit("/", 1)[1]
    assert len(token) >= 32
    assert urls.verify("evolink", UUID, token)
    assert not urls.verify("ark", UUID, token)
    assert not urls.verify("evolink", "5a9f3e1c-2b7d-4c55-9e0a-7d1b2c3e4f50", token)
    assert not urls.verify("evolink", UUID, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not urls.verify("gemini", UUID, token)  # no key, no callbacks


def test_the_token_depends_on_the_key_and_is_stable_across_processes() -> None:
    one = CallbackUrls("https://gw.example.com", {"ark": "key-one"}).url_for("ark", UUID)
    same = CallbackUrls("https://gw.example.com", {"ark": "key-one"}).url_for("ark", UUID)
    other = CallbackUrls("https://gw.example.com", {"ark": "key-two"}).url_for("ark", UUID)
    assert one == same != other
    assert one is not None and "key-one" not in one
