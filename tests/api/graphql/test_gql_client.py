"""The Python `gql` client against a live server: over HTTP, graphql-transport-ws and legacy graphql-ws."""

from __future__ import annotations

from typing import Any

import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import (
    TransportClosed,
    TransportConnectionFailed,
    TransportQueryError,
    TransportServerError,
)
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from tests.api.graphql.wire import REQUEST, ws_url
from tests.conftest import LiveServer, Serve

ME = gql("query { me { email credits { available frozen used total } } }")
MODELS = gql("query { models { id name durations } }")
GENERATE = gql("""
mutation($input: GenerateVideoInput!) { generateVideo(input: $input) { uuid status creditsUsed } }
""")
VIDEOS = gql("""
query($page: Int!, $size: Int!) { videos(page: $page, pageSize: $size) { total videos { uuid } } }
""")
DELETE = gql("mutation($uuid: ID!) { deleteVideo(uuid: $uuid) { uuid deleted } }")
FOLLOW = gql("subscription($uuid: ID!) { videoStatus(uuid: $uuid) { uuid status progress videoUrl } }")
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def http(server: LiveServer, key: str | None) -> Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return Client(transport=HTTPXAsyncTransport(url=f"{server.url}/graphql", headers=headers, timeout=30),
                  execute_timeout=30)


def websocket(server: LiveServer, key: str, protocol: str) -> Client:
    # gql offers the legacy protocol first; Strawberry honours the client's order, so say which.
    transport = WebsocketsTransport(url=ws_url(server.url), init_payload={"Authorization": f"Bearer {key}"},
                                    subprotocols=[protocol], connect_timeout=15, ack_timeout=15,
                                    close_timeout=5)
    return Client(transport=transport, execute_timeout=30)


async def follow(session: Any, uuid: str) -> list[tuple[str, int]]:
    seen = []
    async for result in session.subscribe(GraphQLRequest(FOLLOW, variable_values={"uuid": uuid})):
        seen.append((result["videoStatus"]["status"], result["videoStatus"]["progress"]))
    return seen


def assert_completed_with_progress(seen: list[tuple[str, int]]) -> None:
    assert seen[-1] == ("COMPLETED", 100), seen
    assert len([p for s, p in seen if s == "GENERATING"]) >= 3, seen


async def test_gql_over_http_reads_writes_pages_and_deletes(live_server: LiveServer, make_user: Any) -> None:
    user = await make_user(credits=100)
    async with http(live_server, user.key) as session:
        me = await session.execute(ME)
        assert me["me"]["email"] == user.email and me["me"]["credits"]["available"] == 100
        models = await session.execute(MODELS)
        assert "sora-2" in [m["id"] for m in models["models"]]
        generate = GraphQLRequest(GENERATE, variable_values={"input": REQUEST})
        made = [(await session.execute(generate))["generateVideo"]["uuid"] for _ in range(2)]
        page = await session.execute(GraphQLRequest(VIDEOS, variable_values={"page": 1, "size": 1}))
        assert page["videos"]["total"] == 2 and page["videos"]["videos"] == [{"uuid": made[1]}]
        deleted = await session.execute(GraphQLRequest(DELETE, variable_values={"uuid": made[0]}))
        assert deleted == {"deleteVideo": {"uuid": made[0], "deleted": True}}
        with pytest.raises(TransportQueryError) as not_found:
            await session.execute(GraphQLRequest(DELETE, variable_values={"uuid": made[0]}))
        assert not_found.value.errors is not None
        assert not_found.value.errors[0]["extensions"]["code"] == "NOT_FOUND"


async def test_gql_over_http_without_a_key_is_unauthenticated(live_server: LiveServer) -> None:
    async with http(live_server, None) as session:
        with pytest.raises(TransportQueryError) as refused:
            await session.execute(ME)
        assert refused.value.errors is not None
        assert refused.value.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("protocol", [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
                                      WebsocketsTransport.APOLLO_SUBPROTOCOL])
async def test_gql_over_websocket_follows_a_video_to_completion(serve: Serve, make_user: Any,
                                                               protocol: str) -> None:
    server = serve(local_generation_seconds=2.0)
    user = await make_user(credits=100)
    async with http(server, user.key) as session:
        generate = GraphQLRequest(GENERATE, variable_values={"input": REQUEST})
        created = (await session.execute(generate))["generateVideo"]
        frozen = (await session.execute(ME))["me"]["credits"]
    assert frozen["frozen"] == created["creditsUsed"]
    async with websocket(server, user.key, protocol) as session:
        seen = await follow(session, created["uuid"])
        assert_completed_with_progress(seen)
        if protocol == WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL:
            # graphql-transport-ws also carries queries; legacy graphql-ws runs subscriptions only.
            credits = (await session.execute(ME))["me"]["credits"]
            assert credits["frozen"] == 0 and credits["used"] == created["creditsUsed"]
        with pytest.raises(TransportQueryError) as not_found:
            await follow(session, UNKNOWN)
        assert "not found" in str(not_found.value)


@pytest.mark.parametrize("protocol", [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL,
                                      WebsocketsTransport.APOLLO_SUBPROTOCOL])
async def test_gql_over_websocket_with_a_bad_key_is_refused(live_server: LiveServer, protocol: str) -> None:
    client = websocket(live_server, "kg_" + "B" * 43, protocol)
    with pytest.raises((TransportServerError, TransportClosed, TransportConnectionFailed)) as refused:
        async with client as session:
            await session.execute(MODELS)
    if protocol == WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL:
        closed = refused.value.__cause__
        assert getattr(getattr(closed, "rcvd", None), "code", None) == 4403
    else:
        assert "UNAUTHENTICATED" in str(refused.value)  # the legacy protocol's connection_error
