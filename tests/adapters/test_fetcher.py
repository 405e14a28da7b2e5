"""The safe fetcher for user-supplied image URLs: no SSRF, bounded size, type and time."""

from __future__ import annotations

import io
import ipaddress
import ssl
import time
from collections.abc import Iterator

import pytest
import trustme
from PIL import Image

from kensa_gql.adapters.fetcher import fetch_image, sniff_image
from kensa_gql.domain.errors import ContentRejected
from kensa_gql.domain.urls import IPAddress
from tests.adapters.origin import Reply, serving

PUBLIC_STAND_IN = ipaddress.ip_address("127.0.0.1")   # tests may reach this one...
PRIVATE_STAND_IN = ipaddress.ip_address("127.0.0.2")  # ...and must never reach this one


def only_stand_in(ip: IPAddress) -> bool:
    """The test policy: 127.0.0.1 plays a public address; everything else is refused."""
    return ip == PUBLIC_STAND_IN


def image_bytes(fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, fmt)
    return out.getvalue()


PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG")


class Resolver:
    """Answers from a script, one answer per call (the last repeats), and counts the calls."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = [[ipaddress.ip_address(a) for a in answer] for answer in answers]
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        return self.answers[min(len(self.calls) - 1, len(self.answers) - 1)]


async def no_dns(host: str, port: int) -> list[IPAddress]:
    raise AssertionError(f"an IP literal must not be resolved ({host})")


# -- refused before any connection ------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a.png",
    "http://127.0.0.2:8080/a.png",
    "http://10.1.2.3/a.png",
    "http://172.16.0.1/a.png",
    "http://192.168.1.10/a.png",
    "http://100.64.0.1/a.png",                      # carrier-grade NAT
    "http://169.254.169.254/latest/meta-data/",     # cloud metadata
    "http://0.0.0.0/a.png",
    "http://[::1]/a.png",
    "http://[fe80::1]/a.png",
    "http://[fd00::1]/a.png",
    "http://[::ffff:127.0.0.1]/a.png",              # IPv4-mapped IPv6
    "http://[::ffff:169.254.169.254]/a.png",
    "http://2130706433/a.png",                      # decimal 127.0.0.1
    "http://0x7f000001/a.png",                      # hex
    "http://017700000001/a.png",                    # octal
    "http://127.1/a.png",                           # short dotted
    "http://0xa9.0xfe.0xa9.0xfe/a.png",             # hex dotted metadata address
    "http://localhost/a.png",
    "http://printer.local/a.png",
    "file:///etc/passwd",
    "gopher://example.com/",
    "http://user:pw@example.com/a.png",
])
async def test_non_public_and_malformed_urls_are_refused_without_resolving(url: str) -> None:
    with pytest.raises(ContentRejected) as caught:
        await fetch_image(None, url, resolver=no_dns)
    assert caught.value.message.startswith("startImageUrl:")


@pytest.mark.parametrize("answer", [["10.0.0.7"], ["169.254.169.254"], ["::1"], ["93.184.216.34", "10.0.0.7"],
                                    ["::ffff:192.168.0.1"]])
async def test_a_name_resolving_to_any_private_address_is_refused(answer: list[str]) -> None:
    resolver = Resolver(answer)
    with pytest.raises(ContentRejected, match="private, loopback or reserved"):
        await fetch_image(None, "https://images.example.com/cat.png", resolver=resolver)
    assert resolver.calls == ["images.example.com"]


async def test_the_default_policy_refuses_loopback_even_behind_a_name() -> None:
    async with serving({"/cat.png": Reply(200, [("Content-Type", "image/png")], PNG)}) as origin:
        with pytest.raises(ContentRejected, match="private, loopback or reserved"):
            await fetch_image(None, f"http://cats.test:{origin.port}/cat.png",
                              resolver=Resolver(["127.0.0.1"]))
        assert origin.connections == 0


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    async def fails(host: str, port: int) -> list[IPAddress]:
        raise OSError("Name or service not known")

    with pytest.raises(ContentRejected, match="does not resolve"):
        await fetch_image(None, "https://nowhere.example.com/a.png", resolver=fails)


# -- reaching an allowed origin ---------------------------------------------------------------------

async def test_an_allowed_image_is_returned_with_its_sniffed_type_and_the_original_host() -> None:
    async with serving({"/cat.png": Reply(200, [("Content-Type", "image/png")], PNG)}) as origin:
        resolver = Resolver(["127.0.0.1"])
        data, kind = await fetch_image(None, f"http://cats.test:{origin.port}/cat.png?size=8",
                                       allow=only_stand_in, resolver=resolver)
    assert data == PNG and kind == "image/png"
    assert origin.requests[0].path == "/cat.png?size=8"
    assert origin.requests[0].headers["host"] == f"cats.test:{origin.port}"
    assert "authorization" not in origin.requests[0].headers and "cookie" not in origin.requests[0].headers


async def test_the_bytes_decide_the_type_when_the_label_is_a_different_image_type() -> None:
    async with serving({"/a": Reply(200, [("Content-Type", "image/png")], JPEG)}) as origin:
        data, kind = await fetch_image(None, f"{origin.url}/a", allow=only_stand_in)
    assert data == JPEG and kind == "image/jpeg"


async def test_dns_rebinding_cannot_move_the_connection_to_a_private_address() -> None:
    # given a name that first resolves to the allowed address and then to a private one,
    # with servers listening on both
    async with serving({"/cat.png": Reply(200, [("Content-Type", "image/png")], PNG)}) as public:
        secret = Reply(200, [("Content-Type", "image/png")], b"\x89PNG\r\n\x1a\nSECRET")
        async with serving({"/cat.png": secret}, host="127.0.0.2", port=public.port) as private:
            resolver = Resolver(["127.0.0.1"], ["127.0.0.2"])
            # when fetching it
            data, _ = await fetch_image(None, f"http://rebind.test:{public.port}/cat.png",
                                        allow=only_stand_in, resolver=resolver)
            # then the name was resolved once and only the checked address was connected to
            assert data == PNG
            assert resolver.calls == ["rebind.test"]
            assert public.connections == 1 and private.connections == 0


# -- redirects ----------------------------------------------------------------------------------------

async def test_a_redirect_to_a_private_address_is_refused_and_never_connected() -> None:
    image = Reply(200, [("Content-Type", "image/png")], PNG)
    async with serving({"/cat.png": image}, host="127.0.0.2") as private:
        routes = {"/go": Reply(302, [("Location", f"http://127.0.0.2:{private.port}/cat.png")])}
        async with serving(routes) as public:
            with pytest.raises(ContentRejected, match="private, loopback or reserved"):
                await fetch_image(None, f"{public.url}/go", allow=only_stand_in)
            assert public.connections == 1
        assert private.connections == 0


@pytest.mark.parametrize("location", ["http://169.254.169.254/latest/meta-data/", "http://2130706433/",
                                      "http://[::ffff:10.0.0.1]/", "file:///etc/passwd"])
async def test_redirects_to_metadata_and_disguised_private_addresses_are_refused(location: str) -> None:
    async with serving({"/go": Reply(301, [("Location", location)])}) as origin:
        with pytest.raises(ContentRejected):
            await fetch_image(None, f"{origin.url}/go", allow=only_stand_in)


async def test_a_redirect_to_a_name_resolving_privately_is_refused() -> None:
    async with serving({"/go": Reply(307, [("Location", "http://intranet.test/cat.png")])}) as origin:
        resolver = Resolver(["10.0.0.9"])
        with pytest.raises(ContentRejected, match="private"):
            await fetch_image(None, f"{origin.url}/go", allow=only_stand_in, resolver=resolver)
        assert resolver.calls == ["intranet.test"]


async def test_allowed_relative_redirects_are_followed() -> None:
    routes = {"/a": Reply(302, [("Location", "/b")]), "/b": Reply(303, [("Location", "c.png")]),
              "/c.png": Reply(200, [("Content-Type", "image/png")], PNG)}
    async with serving(routes) as origin:
        data, _ = await fetch_image(None, f"{origin.url}/a", allow=only_stand_in)
    assert data == PNG and [r.path for r in origin.requests] == ["/a", "/b", "/c.png"]


async def test_redirect_loops_are_cut_off() -> None:
    async with serving({"/loop": Reply(302, [("Location", "/loop")])}) as origin:
        with pytest.raises(ContentRejected, match="too many redirects"):
            await fetch_image(None, f"{origin.url}/loop", allow=only_stand_in)
        assert len(origin.requests) == 6


# -- size, type, status, time -------------------------------------------------------------------------

async def test_a_declared_oversize_image_is_refused_before_its_body_is_read() -> None:
    big = PNG + b"\0" * 5000
    async with serving({"/big.png": Reply(200, [("Content-Type", "image/png")], big)}) as origin:
        with pytest.raises(ContentRejected, match="larger than 1000 bytes"):
            await fetch_image(None, f"{origin.url}/big.png", allow=only_stand_in, max_bytes=1000)


async def test_a_streamed_oversize_image_without_length_is_refused() -> None:
    big = PNG + b"\0" * 50_000
    reply = Reply(200, [("Content-Type", "image/png")], big, chunked=True, chunk_size=1000)
    async with serving({"/big.png": reply}) as origin:
        with pytest.raises(ContentRejected, match="larger than 10000 bytes"):
            await fetch_image(None, f"{origin.url}/big.png", allow=only_stand_in, max_bytes=10_000)


@pytest.mark.parametrize(("content_type", "body"), [
    ("text/html; charset=utf-8", b"<html>not an image</html>"),
    ("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
    ("application/octet-stream", PNG),
    (None, PNG),
    ("image/png", b"<html>labelled as an image</html>"),
    ("image/jpeg", b""),
])
async def test_anything_but_a_real_jpeg_png_webp_or_gif_is_refused(content_type: str | None,
                                                                   body: bytes) -> None:
    headers = [("Content-Type", content_type)] if content_type else []
    async with serving({"/x": Reply(200, headers, body)}) as origin:
        with pytest.raises(ContentRejected, match=r"not (a|an) "):
            await fetch_image(None, f"{origin.url}/x", allow=only_stand_in)


@pytest.mark.parametrize("status", [403, 404, 500])
async def test_error_statuses_are_refused_with_the_status(status: int) -> None:
    async with serving({"/x": Reply(status, [("Content-Type", "image/png")], PNG)}) as origin:
        with pytest.raises(ContentRejected, match=f"HTTP {status}"):
            await fetch_image(None, f"{origin.url}/x", allow=only_stand_in)


async def test_a_slow_drip_hits_the_overall_deadline() -> None:
    # every chunk arrives well within a per-read timeout, but the whole takes far too long
    reply = Reply(200, [("Content-Type", "image/png")], PNG * 40, chunk_size=100, delay_per_chunk=0.05)
    async with serving({"/slow.png": reply}) as origin:
        started = time.monotonic()
        with pytest.raises(ContentRejected, match="timed out"):
            await fetch_image(None, f"{origin.url}/slow.png", allow=only_stand_in, timeout=0.5)
        assert time.monotonic() - started < 3


async def test_a_closed_port_is_a_clear_refusal() -> None:
    async with serving({}) as origin:
        port = origin.port
    with pytest.raises(ContentRejected, match="could not be fetched"):
        await fetch_image(None, f"http://127.0.0.1:{port}/a.png", allow=only_stand_in)


# -- TLS keeps the original name ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def server_tls(ca: trustme.CA, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    return context


async def test_https_through_the_pinned_address_sends_sni_and_verifies_the_original_name(
        ca: trustme.CA, client_tls: ssl.SSLContext) -> None:
    routes = {"/cat.png": Reply(200, [("Content-Type", "image/png")], PNG)}
    async with serving(routes, tls=server_tls(ca, "images.test")) as origin:
        data, _ = await fetch_image(None, f"https://images.test:{origin.port}/cat.png", allow=only_stand_in,
                                    resolver=Resolver(["127.0.0.1"]), ssl_context=client_tls)
    assert data == PNG
    assert origin.sni == ["images.test"]
    assert origin.requests[0].headers["host"] == f"images.test:{origin.port}"


async def test_https_with_a_certificate_for_another_name_is_refused(
        ca: trustme.CA, client_tls: ssl.SSLContext) -> None:
    routes = {"/cat.png": Reply(200, [("Content-Type", "image/png")], PNG)}
    async with serving(routes, tls=server_tls(ca, "someone-else.test")) as origin:
        with pytest.raises(ContentRejected, match="could not be fetched"):
            await fetch_image(None, f"https://images.test:{origin.port}/cat.png", allow=only_stand_in,
                              resolver=Resolver(["127.0.0.1"]), ssl_context=client_tls)
        assert origin.requests == []


# -- magic bytes -----------------------------------------------------------------------------------------

def webp_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4)).save(out, "WEBP")
    return out.getvalue()


def gif_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("P", (4, 4)).save(out, "GIF")
    return out.getvalue()


def sniff_cases() -> Iterator[tuple[bytes, str | None]]:
    yield PNG, "image/png"
    yield JPEG, "image/jpeg"
    yield webp_bytes(), "image/webp"
    yield gif_bytes(), "image/gif"
    yield b"RIFF\0\0\0\0WAVEfmt ", None
    yield b"<svg", None
    yield b"", None


@pytest.mark.parametrize(("data", "kind"), list(sniff_cases()))
def test_magic_bytes_identify_the_four_accepted_formats(data: bytes, kind: str | None) -> None:
    assert sniff_image(data[:16]) == kind

