from __future__ import annotations

import pytest

from kensa_gql.domain.errors import BadUserInput
from kensa_gql.domain.urls import check_image_url


@pytest.mark.parametrize("url", [
    "https://example.com/cat.jpg",
    "http://images.example.org:8080/a/b.png?x=1",
    "https://93.184.216.34/a.jpg",
    "https://[2606:2800:220:1:248:1893:25c8:1946]/a.jpg",
])
def test_public_http_urls_are_accepted(url: str) -> None:
    check_image_url(url)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a.jpg",
    "http://localhost/a.jpg",
    "http://api.localhost/a.jpg",
    "http://10.0.0.5/a.jpg",
    "http://172.16.3.4/a.jpg",
    "http://192.168.1.1/a.jpg",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/a.jpg",
    "http://0.0.0.0/a.jpg",
    "http://224.0.0.1/a.jpg",
    "http://240.0.0.1/a.jpg",
    "http://[::1]/a.jpg",
    "http://[fe80::1]/a.jpg",
    "http://[fc00::1]/a.jpg",
    "http://[::ffff:127.0.0.1]/a.jpg",
    "http://[::ffff:169.254.169.254]/a.jpg",
    "http://2130706433/a.jpg",
    "http://0x7f000001/a.jpg",
    "http://017700000001/a.jpg",
    "http://127.1/a.jpg",
    "https://user:pass@example.com/a.jpg",
    "https://user@example.com/a.jpg",
    "file:///etc/passwd",
    "gopher://example.com/",
    "//example.com/a.jpg",
    "example.com/a.jpg",
    "https:///a.jpg",
    "https://example.com/" + "a" * 2048,
    "https://exa mple.com/a.jpg",
])
def test_unsafe_or_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(BadUserInput) as info:
        check_image_url(url)
    assert info.value.field == "startImageUrl"
