"""The web console in a real browser: Playwright driving Debian's chromium against `kensa-gql serve`.

One served process (SQLite, the embedded local renderer made quick) is shared by the module; the
restart test stops it and starts it again on the same port and database. Screenshots of
the main screens go to tests/e2e/screenshots/ (ignored by git; docs/images/ keeps two of them).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright, expect

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.adapters.db.migrate import upgrade
from kensa_gql.domain.catalog import Catalog
from kensa_gql.services import accounts
from kensa_gql.settings import Settings
from tests.processes import Replica, gateway_env

CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/run installs it); Playwright cannot download one here
SCREENSHOTS = Path(__file__).parent / "screenshots"
MODELS = [spec.id for spec in Catalog.load().models if spec.enabled]
ME = "{ me { credits { available frozen used total } } }"
TIMEOUT_MS = 30_000
pytestmark = pytest.mark.asyncio(loop_scope="module")
KEYLESS_SUBSCRIPTION = 'subscription { videoStatus(uuid: "9b2f6a0e-4c1d-4e8a-9f3b-0a1b2c3d4e5f") { status } }'


class Gateway:
    """A served gateway on SQLite, and a way to make users in its database."""

    def __init__(self, folder: Path, generation_seconds: float) -> None:
        self.settings = Settings(database_url=f"sqlite+aiosqlite:///{folder}/kensa.db", media_dir=folder / "media",
                                 local_generation_seconds=generation_seconds, claim_interval_seconds=0.1,
                                 lease_seconds=2.0)
        upgrade(self.settings.database_url)
        self.replica = Replica("console", gateway_env(self.settings), folder, worker=True)
        self.url = self.replica.url
        self.users = 0

    def start(self) -> None:
        self.replica.start()
        self.replica.wait_ready()

    async def user(self, credits: int) -> str:
        """A new user's API key."""
        self.users += 1
        db = Database(create_engine(self.settings.database_url))
        try:
            _, issued = await accounts.create_user(f"console{self.users}@example.test", credits=credits, db=db)
        finally:
            await db.dispose()
        return issued.key

    async def credits(self, key: str) -> dict[str, int]:
        async with httpx.AsyncClient(base_url=self.url) as client:
            r = await client.post("/graphql", json={"query": ME}, headers={"Authorization": f"Bearer {key}"})
        credits: dict[str, int] = r.json()["data"]["me"]["credits"]
        return credits


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    served = Gateway(tmp_path_factory.mktemp("console"), generation_seconds=2.5)
    served.start()
    yield served
    served.replica.stop()


# One browser for the module (a launch costs seconds); each test opens its own pages and contexts.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest_asyncio.fixture(autouse=True, loop_scope="module")
async def closed_pages(browser: Browser) -> AsyncIterator[None]:
    """Each test's pages (and their sockets) close with the test."""
    yield
    for context in browser.contexts:
        await context.close()


async def signed_in(browser: Browser | BrowserContext, url: str, key: str, *, width: int = 1280) -> Page:
    page = await (browser.new_page(viewport={"width": width, "height": 900}) if isinstance(browser, Browser)
                  else browser.new_page())
    await page.goto(url)
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#workspace")).to_be_visible(timeout=TIMEOUT_MS)
    await expect(page.locator("#f-model option")).to_have_count(len(MODELS))
    return page


async def generate(page: Page, model: str | None = None) -> str:
    """Submits the form (with its defaults, ``model`` aside); returns the new video's uuid."""
    if model:
        await page.get_by_label("Model").select_option(model)
    before = set(await page.locator("#gallery li").evaluate_all("cards => cards.map(c => c.dataset.uuid)"))
    await page.get_by_role("button", name="Generate").click()
    card = page.locator("#gallery li").first
    await expect(card).not_to_have_attribute("data-uuid", re.compile("^(" + "|".join(before or {"-"}) + ")$"),
                                             timeout=TIMEOUT_MS)
    uuid = await card.get_attribute("data-uuid")
    assert uuid
    return uuid


async def completed(page: Page, uuid: str) -> None:
    card = page.locator(f'#gallery li[data-uuid="{uuid}"]')
    await expect(card).to_have_attribute("data-status", "COMPLETED", timeout=TIMEOUT_MS)
    await expect(card.locator("progress")).to_have_attribute("value", "100")


async def shown_credits(page: Page) -> dict[str, int]:
    return {name: int(await page.locator(f"#credits-{name}").inner_text())
            for name in ("available", "frozen", "used", "total")}


def screenshot(name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


async def test_a_bad_key_is_refused_and_a_good_one_signs_in(gateway: Gateway, browser: Browser) -> None:
    key = await gateway.user(credits=7)
    page = await browser.new_page()
    await page.goto(gateway.url)
    await page.get_by_label("API key").fill("kg_not_a_key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#api-key-error")).to_have_text("That key was not accepted.")
    await page.screenshot(path=screenshot("sign-in-refused"))
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#workspace")).to_be_visible()
    await expect(page.locator("#credits-available")).to_have_text("7")
    assert key not in page.url
    assert await page.evaluate("sessionStorage.getItem('kensa.apiKey')") == key
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API key")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('kensa.apiKey')") is None
    assert key not in gateway.replica.log()


async def test_each_model_makes_a_video_that_plays(gateway: Gateway, browser: Browser) -> None:
    # given a user with enough credits for one video of each model at the form's defaults
    key = await gateway.user(credits=100)
    page = await signed_in(browser, gateway.url, key)
    uuids = []
    for number, model in enumerate(MODELS):
        # when the form is submitted with that model and its defaults
        uuids.append(await generate(page, model))
        if number == 0:
            await expect(page.locator("#gallery li .pct").first).not_to_have_text(" 0 %", timeout=TIMEOUT_MS)
            await page.screenshot(path=screenshot("generate"), full_page=True)
    # then each progress bar reaches 100 % and each video plays
    for uuid in uuids:
        await completed(page, uuid)
    await expect(page.locator("#credits-frozen")).to_have_text("0")
    credits = await shown_credits(page)
    assert credits == await gateway.credits(key)
    assert credits["used"] == 100 - credits["available"] > 0
    await page.screenshot(path=screenshot("gallery"), full_page=True)
    for uuid in uuids:
        await page.locator(f'#gallery li[data-uuid="{uuid}"] button').click()
        video = page.locator("#detail-player video")
        await expect(video).to_be_visible()
        duration = await video.evaluate("""v => v.readyState >= 1 ? v.duration : new Promise(resolve =>
            v.addEventListener('loadedmetadata', () => resolve(v.duration), { once: true }))""")
        assert duration > 0, uuid
    await page.screenshot(path=screenshot("detail"), full_page=True)


async def test_insufficient_credits_show_the_servers_message_and_charge_nothing(
        gateway: Gateway, browser: Browser) -> None:
    key = await gateway.user(credits=5)
    page = await signed_in(browser, gateway.url, key, width=360)
    before = await gateway.credits(key)
    await page.get_by_label("Model").select_option("veo-3-1")  # 4 s at 2.5 credits a second: 10
    await page.get_by_role("button", name="Generate").click()
    await expect(page.locator("#f-credits-error")).to_contain_text("insufficient credits: 10 required, 5 available")
    await page.screenshot(path=screenshot("insufficient-credits-360px"), full_page=True)
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360  # readable without side-scrolling
    assert await gateway.credits(key) == before
    assert await shown_credits(page) == before
    await expect(page.locator("#gallery li")).to_have_count(0)


async def test_a_deleted_video_leaves_the_gallery(gateway: Gateway, browser: Browser) -> None:
    key = await gateway.user(credits=10)
    page = await signed_in(browser, gateway.url, key)
    uuid = await generate(page, "sora-2")
    await completed(page, uuid)
    await page.locator(f'#gallery li[data-uuid="{uuid}"] button').click()
    await page.get_by_role("button", name="Delete").click()
    await expect(page.locator("#gallery li")).to_have_count(0)
    await expect(page.locator("#detail")).to_be_hidden()
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        r = await client.post("/graphql", json={"query": "{ videos { total } }"},
                              headers={"Authorization": f"Bearer {key}"})
    assert r.json()["data"]["videos"]["total"] == 0


async def test_two_tabs_of_one_user_both_see_a_video_complete(gateway: Gateway, browser: Browser) -> None:
    key = await gateway.user(credits=10)
    # given two tabs of one browser, each signed in (the key is kept per tab)
    context = await browser.new_context()
    tabs = [await signed_in(context, gateway.url, key) for _ in range(2)]
    # when one of them generates, then both follow the video to the end
    uuid = await generate(tabs[0], "sora-2")
    for tab in tabs:
        await completed(tab, uuid)
        await expect(tab.locator("#credits-used")).to_have_text("1")
    await context.close()


async def test_a_dropped_websocket_reconnects_and_keeps_the_final_state(gateway: Gateway, browser: Browser) -> None:
    # given a video still being made when the server goes away
    key = await gateway.user(credits=10)
    page = await signed_in(browser, gateway.url, key)
    uuid = await generate(page, "sora-2")
    await expect(page.locator("#live")).to_have_text("Live", timeout=TIMEOUT_MS)
    # when it is restarted on the same port and database (its runner stopped mid-render: the
    # restarted one takes the task over once the lease lapses)
    await asyncio.to_thread(gateway.replica.stop)
    await expect(page.locator("#live")).to_have_text("Reconnecting…", timeout=TIMEOUT_MS)
    await asyncio.to_thread(gateway.start)
    # then the page reconnects and shows the video completed, credits settled
    await completed(page, uuid)
    await expect(page.locator("#credits-used")).to_have_text("1", timeout=TIMEOUT_MS)


async def test_graphiql_works_offline_and_a_subscription_without_a_key_fails_at_once(
        gateway: Gateway, browser: Browser) -> None:
    # given a browser that may reach the gateway and nothing else
    page = await browser.new_page()
    elsewhere: list[str] = []

    async def only_the_gateway(route: Route) -> None:
        if route.request.url.startswith(gateway.url):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_the_gateway)
    # when GraphiQL runs a subscription with no Authorization header
    await page.goto(f"{gateway.url}/graphql?q={quote(KEYLESS_SUBSCRIPTION)}")
    await expect(page.locator(".graphiql-query-editor")).to_be_visible(timeout=TIMEOUT_MS)
    await page.locator(".graphiql-execute-button").click()
    # then it says so instead of retrying (graphql-ws would retry a 4403 close)
    await expect(page.locator(".graphiql-response")).to_contain_text("4403 Forbidden", timeout=5_000)
    await page.screenshot(path=screenshot("graphiql-offline"))
    assert elsewhere == []


async def test_the_price_shows_before_paying_and_a_running_video_can_be_cancelled(
        tmp_path: Path, browser: Browser) -> None:
    # given a gateway whose renders take a minute, and a user with 12 credits
    slow = await asyncio.to_thread(Gateway, tmp_path, 60)  # it migrates with asyncio.run of its own
    await asyncio.to_thread(slow.start)
    try:
        key = await slow.user(credits=12)
        page = await signed_in(browser, slow.url, key)
        # then the form shows each choice's price, from VideoModel.prices, before anything is frozen
        await page.get_by_label("Model").select_option("veo-3-1")
        await expect(page.locator("#price")).to_have_text("Price: 10 credits")
        await page.get_by_label("Model").select_option("sora-2")
        await expect(page.locator("#price")).to_have_text("Price: 1 credit")
        # when a video is started, opened, and cancelled while it runs
        uuid = await generate(page)
        await expect(page.locator("#credits-frozen")).to_have_text("1", timeout=TIMEOUT_MS)
        await page.locator(f'#gallery li[data-uuid="{uuid}"] button').click()
        await page.locator("#detail-cancel").click()
        # then it reads CANCELLED, the button goes, and nothing was charged
        await expect(page.locator(f'#gallery li[data-uuid="{uuid}"]')).to_have_attribute(
            "data-status", "CANCELLED", timeout=TIMEOUT_MS)
        await expect(page.locator("#detail-cancel")).to_be_hidden()
        await expect(page.locator("#credits-frozen")).to_have_text("0", timeout=TIMEOUT_MS)
        assert await shown_credits(page) == await slow.credits(key) == {
            "available": 12, "frozen": 0, "used": 0, "total": 12}
    finally:
        await asyncio.to_thread(slow.replica.stop)
