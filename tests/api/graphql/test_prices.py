"""Prices before paying: every model's price table, and the exact charge of one request, nothing frozen."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kensa_gql.domain.catalog import Catalog
from tests.api.graphql.wire import GENERATE, REQUEST, codes, post

# Prices come from the catalogue and the same validation on any database: one is enough here.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PRICES = "query { models { id durations resolutions prices { duration quality credits } } }"
PRICE = "query Price($input: GenerateVideoInput!) { price(input: $input) }"
ME = "query { me { credits { available frozen } } }"


async def test_models_list_every_price_of_the_catalogue(client: httpx.AsyncClient) -> None:
    catalog = Catalog.load()
    for _ in range(2):  # the first POST takes Strawberry's path, the next the compiled one
        models = (await post(client, PRICES))["data"]["models"]
        for model in models:
            spec = catalog.get(model["id"])
            assert spec is not None
            assert model["prices"] == [{"duration": d, "quality": r, "credits": spec.price(d, r)}
                                       for d in spec.durations for r in spec.resolutions]
    sora = next(m for m in models if m["id"] == "sora-2")
    # the legacy reference: a 10-second 720p sora-2 video costs 2 credits
    assert {"duration": 10, "quality": "720p", "credits": 2} in sora["prices"]


async def test_price_is_what_generate_charges_and_freezes_nothing(client: httpx.AsyncClient,
                                                                   make_user: Any) -> None:
    user = await make_user(credits=100)
    request = {**REQUEST, "model": "wan-2-6", "duration": 10, "quality": "1080p"}
    # when the caller asks for the price
    price = (await post(client, PRICE, {"input": request}, key=user.key))["data"]["price"]
    assert price == 74  # ceil(7.4 * 10)
    # then nothing is frozen, and generate charges exactly that
    me = (await post(client, ME, key=user.key))["data"]["me"]["credits"]
    assert me == {"available": 100, "frozen": 0}
    made = (await post(client, GENERATE, {"input": request}, key=user.key))["data"]["generateVideo"]
    assert made["creditsUsed"] == price
    # a price above the balance is still answered (today's 402 comes only from generate)
    assert (await post(client, PRICE, {"input": request}, key=user.key))["data"]["price"] == 74


async def test_price_refuses_what_generate_refuses(client: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user(credits=100)
    for changes, field in [({"duration": 7}, "duration"), ({"model": "nope"}, "model"),
                           ({"quality": "4k"}, "quality"), ({"prompt": " "}, "prompt"),
                           ({"idempotencyKey": "x" * 256}, "idempotencyKey")]:
        for query in (PRICE, GENERATE):
            body = await post(client, query, {"input": {**REQUEST, **changes}}, key=user.key)
            assert codes(body) == ["BAD_USER_INPUT"], (changes, body)
            assert body["errors"][0]["extensions"]["field"] == field
    # and, like generate, it needs a key
    assert codes(await post(client, PRICE, {"input": REQUEST})) == ["UNAUTHENTICATED"]
