"""The WebSocket protocols, differentially: the same scripted exchanges against a live server with
``graphql_fastpath`` off (Strawberry's own protocol handlers, as api/graphql/protocols.py adapts
them: the reference) and on (our graphql-transport-ws, ws/, and its lean ``videoStatus``
subscribers), and the transcripts compared. Legacy graphql-ws is Strawberry's in both modes: its
scripts check that the view still hands it (and a socket offering no subprotocol) to Strawberry.

A script is a list of steps (connect, send a frame, expect messages, expect the close, follow a
subscription to its end, act over HTTP...). Playing it records a transcript: every message
received, in order, and the close code and reason. Values that legitimately differ between two
servers (video uuids, API keys, ports and URLs, timestamps) are replaced by placeholders, and a
``videoStatus`` stream, whose intermediate progress depends on timing (latest wins), is reduced
to its shape: the snapshot, then strictly newer changes, the terminal one in full, then its end.

Each mode gets its own servers and databases, played one mode after the other (events are
in-process pub/sub: a subscriber must be on the server whose worker changes the video):

* ``main``: with the task runner, so videos go to COMPLETED within a couple of seconds;
* ``limits``: without it (videos stay PENDING: subscriptions stay open and quiet, so their
  transcripts are exact) and with small limits: 3 operations a socket, 0.5 s for
  connection_init, 512-byte documents.

Each script also states what the reference must do (``anchor``), so a script that stopped
exercising what it is named after does not pass by both modes doing nothing alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from kensa_gql.adapters.db.database import Database
from kensa_gql.adapters.db.engine import create_engine
from kensa_gql.services import accounts
from kensa_gql.settings import Settings
from tests.api.graphql.wire import GENERATE, REQUEST, VIDEO_STATUS, ws_url
from tests.conftest import LiveServer

TRANSPORT_WS, LEGACY_WS = "graphql-transport-ws", "graphql-ws"
MODES = {"reference": False, "fastpath": True}  # mode -> graphql_fastpath

ME = "query Me { me { email } }"
VIDEO = "query Video($uuid: ID!) { video(uuid: $uuid) { uuid prompt model duration aspectRatio } }"
DELETE = "mutation Delete($uuid: ID!) { deleteVideo(uuid: $uuid) { uuid deleted } }"
# Another text than VIDEO_STATUS: never seen before by the server when the script sends it, so
# the fast path hands it to Strawberry's loop (VIDEO_STATUS is warmed up: lean subscribers).
FOLLOW_COLD = "subscription Cold($uuid: ID!) { videoStatus(uuid: $uuid) { uuid status progress } }"
# A lean subscriber's document may alias its one root field (a second sight of it is lean).
ALIASED = "subscription Aliased($uuid: ID!) { watched: videoStatus(uuid: $uuid) { state: status uuid } }"
UNKNOWN = "00000000-0000-4000-8000-000000000000"
LIMITS = {"max_subscriptions_per_connection": 3, "graphql_connection_init_timeout_seconds": 0.5,
          "graphql_max_document_bytes": 512}
# Valid, and over the limits server's 512 bytes only because of its trailing blanks.
LARGE_DOCUMENT = "subscription Large($uuid: ID!) { videoStatus(uuid: $uuid) { uuid status } }" + " " * 600

RECEIVE_WITHIN = 5.0
STREAM_WITHIN = 20.0
TERMINAL = ("COMPLETED", "FAILED")
RANK = {"PENDING": 0, "GENERATING": 1, "UPLOADING": 2, "COMPLETED": 3, "FAILED": 3}


# -- scripts ---------------------------------------------------------------------------------------

@dataclass
class Connect:
    """Open the socket offering ``protocols`` (None: no Sec-WebSocket-Protocol at all); ``header``:
    the user (a name from the context) or literal key sent as ``Authorization: Bearer`` on the upgrade."""
    protocols: list[str] | None = field(default_factory=lambda: [TRANSPORT_WS])
    header: str | None = None


@dataclass
class Send:
    """A JSON text frame; strings ``<<name>>`` are filled in from the context (keys, uuids)."""
    message: Any


@dataclass
class SendText:
    text: str


@dataclass
class SendBytes:
    data: bytes


@dataclass
class Recv:
    """The next ``n`` messages, in order (or the close, if the server closes instead)."""
    n: int = 1


@dataclass
class RecvSorted:
    """The next ``n`` messages, in whichever order they come (concurrent operations' first messages)."""
    n: int


@dataclass
class Stream:
    """Every message of the operations ``ops`` up to their complete or error, each reduced to its shape."""
    ops: list[Any]
    within: float = STREAM_WITHIN


@dataclass
class Closed:
    """The server closes the socket: whatever it sends first, then the close code and reason."""
    within: float = RECEIVE_WITHIN


@dataclass
class Quiet:
    """Nothing arrives for ``seconds``."""
    seconds: float = 0.3


@dataclass
class Generate:
    """A video made over HTTP by ``user``, its uuid kept in the context as ``name``."""
    name: str
    user: str = "alice"


@dataclass
class Delete:
    """``deleteVideo`` over HTTP (the response goes into the transcript)."""
    name: str
    user: str = "alice"


@dataclass
class WaitCompleted:
    """Until the video is COMPLETED (over HTTP)."""
    name: str
    user: str = "alice"


Step = Connect | Send | SendText | SendBytes | Recv | RecvSorted | Stream | Closed | Quiet | Generate | Delete | \
    WaitCompleted


def init(user: str | None = "alice", **payload: Any) -> Send:
    if user is not None:
        payload["Authorization"] = f"Bearer <<{user}>>"
    return Send({"type": "connection_init", "payload": payload})


def subscribe(op_id: str, query: str, **variables: Any) -> Send:
    return Send({"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables}})


def start(op_id: str, query: str, **variables: Any) -> Send:
    return Send({"id": op_id, "type": "start", "payload": {"query": query, "variables": variables}})


def follow(op_id: str, video: str, query: str = VIDEO_STATUS, kind: Callable[..., Send] = subscribe) -> Send:
    return kind(op_id, query, uuid=f"<<{video}>>")


Anchor = Callable[[list[Any]], None]


def closes(code: int, reason: str) -> Anchor:
    def check(transcript: list[Any]) -> None:
        assert ["close", code, reason] in transcript, f"expected close {code} {reason!r}"
    return check


def stays_open(transcript: list[Any]) -> None:
    assert transcript[-1] == ["end", "open"], "expected the socket to stay open"


def types_seen(*expected: str) -> Anchor:
    """These message types arrive, in this order (others may come in between)."""
    def check(transcript: list[Any]) -> None:
        seen = [entry[1].get("type") for entry in transcript if entry[0] == "recv"]
        for entry in transcript:
            if entry[0] == "stream":
                seen.extend(token.get("type") for token in entry[2] if isinstance(token, dict))
        position = 0
        for kind in seen:
            if position < len(expected) and kind == expected[position]:
                position += 1
        assert position == len(expected), f"expected message types {expected} in order, saw {seen}"
    return check


def error_code(code: str) -> Anchor:
    def check(transcript: list[Any]) -> None:
        assert f'"code": "{code}"' in json.dumps(transcript), f"expected an error with code {code}"
    return check


def mentions(text: str) -> Anchor:
    def check(transcript: list[Any]) -> None:
        assert text in json.dumps(transcript), f"expected {text!r} in the transcript"
    return check


def all_of(*anchors: Anchor) -> Anchor:
    def check(transcript: list[Any]) -> None:
        for anchor in anchors:
            anchor(transcript)
    return check


@dataclass
class Script:
    name: str
    server: str  # "main" or "limits"
    steps: list[Step]
    anchor: Anchor


SCRIPTS = [
    # -- graphql-transport-ws: connection_init and authentication --------------------------------
    Script("init_payload_auth_then_query_and_id_reuse", "main", [
        Connect(), init(), Recv(),
        subscribe("q", ME), Recv(2),
        subscribe("q", ME), Recv(2),  # the id is free again once its complete was sent
    ], all_of(types_seen("connection_ack", "next", "complete", "next", "complete"), stays_open)),
    Script("init_lowercase_authorization_entry", "main", [
        Connect(), Send({"type": "connection_init", "payload": {"authorization": "Bearer <<alice>>"}}), Recv(),
        subscribe("q", ME), Recv(2),
    ], all_of(types_seen("connection_ack", "next", "complete"), stays_open)),
    Script("auth_by_header_on_upgrade", "main", [
        Connect(header="alice"), Send({"type": "connection_init"}), Recv(),
        subscribe("q", ME), Recv(2),
    ], all_of(types_seen("connection_ack", "next", "complete"), stays_open)),
    Script("init_payload_wins_over_header", "main", [
        Connect(header="bob"), init("alice"), Recv(),
        subscribe("q", ME), Recv(2),
    ], all_of(types_seen("connection_ack", "next", "complete"), mentions("alice@example.test"))),
    Script("bad_key_in_payload_refused", "main", [
        Connect(), init("nobody"), Closed(),
    ], closes(4403, "Forbidden")),
    Script("bad_key_in_header_refused", "main", [
        Connect(header="nobody"), Send({"type": "connection_init", "payload": {}}), Closed(),
    ], closes(4403, "Forbidden")),
    Script("no_credentials_refused", "main", [
        Connect(), init(None), Closed(),
    ], closes(4403, "Forbidden")),
    Script("init_payload_not_an_object", "main", [
        Connect(), Send({"type": "connection_init", "payload": ["Bearer x"]}), Closed(),
    ], closes(4400, "Invalid connection init payload")),
    Script("init_payload_null", "main", [
        Connect(), Send({"type": "connection_init", "payload": None}), Closed(),
    ], closes(4400, "Invalid connection init payload")),
    Script("two_inits", "main", [
        Connect(), init(), Recv(), init(), Closed(),
    ], closes(4429, "Too many initialisation requests")),
    # -- ping and pong ---------------------------------------------------------------------------
    Script("ping_pong_before_and_after_init", "main", [
        Connect(),
        Send({"type": "ping"}), Recv(),
        Send({"type": "ping", "payload": {"at": 1}}), Recv(),
        Send({"type": "pong"}), Send({"type": "pong", "payload": {"at": 2}}), Quiet(),  # a pong needs no answer
        init(), Recv(),
        Send({"type": "ping", "payload": {"at": 3}}), Recv(),
    ], all_of(types_seen("pong", "pong", "connection_ack", "pong"), stays_open)),
    # -- state errors ----------------------------------------------------------------------------
    Script("subscribe_before_init", "main", [
        Connect(), subscribe("1", ME), Closed(),
    ], closes(4401, "Unauthorized")),
    Script("complete_unknown_id_ignored_complete_without_id_refused", "main", [
        Connect(), init(), Recv(),
        Send({"id": "nope", "type": "complete"}), Quiet(),
        Send({"type": "complete"}), Closed(),
    ], closes(4400, "Failed to parse message")),
    # -- malformed messages ----------------------------------------------------------------------
    Script("subscribe_payload_not_an_object", "main", [
        Connect(), init(), Recv(), Send({"id": "1", "type": "subscribe", "payload": "{ me { email } }"}), Closed(),
    ], closes(4400, "Failed to parse message")),
    Script("subscribe_without_payload", "main", [
        Connect(), init(), Recv(), Send({"id": "1", "type": "subscribe"}), Closed(),
    ], closes(4400, "Failed to parse message")),
    Script("subscribe_payload_without_query", "main", [
        Connect(), init(), Recv(), Send({"id": "1", "type": "subscribe", "payload": {"variables": {}}}), Closed(),
    ], closes(4400, "Failed to parse message")),
    Script("subscribe_without_id", "main", [
        Connect(), init(), Recv(), Send({"type": "subscribe", "payload": {"query": ME}}), Closed(),
    ], closes(4400, "Failed to parse message")),
    Script("message_without_type", "main", [
        Connect(), init(), Recv(), Send({"id": "1", "payload": {"query": ME}}), Closed(),
    ], closes(4400, "Failed to parse message")),
    Script("message_not_an_object", "main", [
        Connect(), init(), Recv(), SendText("[1, 2]"), Closed(),
    ], closes(4400, "Failed to parse message")),
    Script("non_json_text", "main", [
        Connect(), init(), Recv(), SendText("{not json"), Closed(),
    ], closes(4400, "WebSocket message must be valid JSON")),
    Script("binary_frame", "main", [
        Connect(), init(), Recv(), SendBytes(b'{"type": "ping"}'), Closed(),
    ], closes(4400, "WebSocket message type must be text")),
    Script("message_type_not_a_string", "main", [
        Connect(), init(), Recv(), Send({"type": 5}), Closed(),
    ], closes(4400, "Unknown message type: 5")),
    Script("operation_id_not_a_string", "main", [
        Connect(), init(), Recv(),
        Send({"id": 7, "type": "subscribe", "payload": {"query": ME}}), Stream([7], within=3),
        Send({"type": "ping"}), Recv(),
    ], types_seen("connection_ack")),
    Script("operation_id_an_object", "main", [
        Connect(), init(), Recv(), Send({"id": {"a": 1}, "type": "subscribe", "payload": {"query": ME}}), Closed(),
    ], closes(4400, "Failed to parse message")),
    Script("complete_with_an_id_that_is_a_list", "main", [
        Connect(), init(), Recv(), Send({"id": ["1"], "type": "complete"}), Closed(),
    ], closes(4400, "Failed to parse message")),
    Script("query_not_a_string", "main", [
        Connect(), init(), Recv(),
        Send({"id": "1", "type": "subscribe", "payload": {"query": 42}}), Stream(["1"], within=3),
        Send({"type": "ping"}), Recv(),
    ], types_seen("connection_ack")),
    Script("variables_not_an_object", "main", [
        Connect(), init(), Recv(),
        # VIDEO_STATUS is a remembered document: on the fast path, a candidate lean subscriber.
        Send({"id": "1", "type": "subscribe", "payload": {"query": VIDEO_STATUS, "variables": ["x"]}}),
        Stream(["1"], within=3),
        Send({"type": "ping"}), Recv(),
        subscribe("1", ME), Stream(["1"], within=3),  # and its id is free again
    ], types_seen("connection_ack")),
    Script("operation_name_not_a_string", "main", [
        Connect(), init(), Recv(),
        Send({"id": "1", "type": "subscribe", "payload": {"query": ME, "operationName": ["Me"]}}),
        Stream(["1"], within=3),
        Send({"type": "ping"}), Recv(),
    ], types_seen("connection_ack")),
    Script("unknown_message_type", "main", [
        Connect(), init(), Recv(), Send({"type": "nope"}), Closed(),
    ], closes(4400, "Unknown message type: nope")),
    # -- bad documents ---------------------------------------------------------------------------
    # Strawberry's handler closes 4400 for a GraphQLSyntaxError; the schema's parser extension
    # reports it as an error with a code instead, for that operation only.
    Script("syntax_error", "main", [
        Connect(), init(), Recv(), subscribe("1", "subscription { videoStatus(uuid: "), Recv(),
        Send({"type": "ping"}), Recv(),
    ], all_of(error_code("GRAPHQL_PARSE_FAILED"), stays_open)),
    Script("validation_error_is_an_error_message_and_the_socket_carries_on", "main", [
        Connect(), init(), Recv(),
        subscribe("1", "query { me { nope } }"), Recv(),
        subscribe("1", ME), Recv(2),  # an id is free again after its error
        Send({"type": "ping"}), Recv(),
    ], all_of(types_seen("connection_ack", "error", "next", "complete", "pong"),
              error_code("GRAPHQL_VALIDATION_FAILED"), stays_open)),
    Script("no_operation_of_that_name", "main", [
        Connect(), init(), Recv(),
        Send({"id": "1", "type": "subscribe", "payload": {"query": ME, "operationName": "Other"}}),
        Stream(["1"], within=3),
        Send({"type": "ping"}), Recv(),
    ], types_seen("connection_ack")),
    Script("variables_refused", "main", [
        Connect(), init(), Recv(),
        subscribe("1", VIDEO_STATUS), Recv(),  # $uuid missing
        subscribe("2", VIDEO_STATUS, uuid=12), Recv(),
        Send({"type": "ping"}), Recv(),
    ], all_of(types_seen("connection_ack", "error", "error", "pong"), stays_open)),
    # -- operations over the socket --------------------------------------------------------------
    Script("query_and_mutation", "main", [
        Connect(), init(), Recv(),
        subscribe("m", GENERATE, input=REQUEST), Recv(2),
        Send({"id": "q", "type": "subscribe",
              "payload": {"query": VIDEO, "variables": {"uuid": UNKNOWN}, "operationName": "Video"}}), Recv(2),
    ], all_of(types_seen("connection_ack", "next", "complete", "next", "complete"), stays_open)),
    Script("mutation_refused", "main", [
        Connect(), init(), Recv(),
        subscribe("m", GENERATE, input={**REQUEST, "model": "no-such-model"}), Recv(2),
    ], all_of(types_seen("connection_ack", "next", "complete"), error_code("BAD_USER_INPUT"), stays_open)),
    Script("follow_to_completed_cold_and_lean_then_a_finished_video", "main", [
        Connect(), init(), Recv(), Generate("v"),
        follow("cold", "v", FOLLOW_COLD), follow("lean", "v"), follow("lean2", "v"),
        Stream(["cold", "lean", "lean2"]),
        follow("after", "v"), Recv(2),  # a finished video: its snapshot, then complete at once
    ], all_of(types_seen("connection_ack", "next", "complete", "next", "complete"), stays_open)),
    Script("client_complete_mid_stream_then_same_id_again", "main", [
        Connect(), init(), Recv(), Generate("v"),
        follow("1", "v"), Recv(),
        Send({"id": "1", "type": "complete"}), Quiet(0.5),  # nothing more for it, not even complete
        follow("1", "v"), Stream(["1"]),
    ], all_of(types_seen("connection_ack", "next", "next", "complete"), stays_open)),
    Script("not_found_unknown_foreign_and_malformed_uuid", "limits", [
        Connect(), init(), Recv(), Generate("bobs", user="bob"),
        Send({"id": "unknown", "type": "subscribe", "payload": {"query": VIDEO_STATUS,
                                                                 "variables": {"uuid": UNKNOWN}}}),
        Stream(["unknown"]),
        follow("foreign", "bobs"), Stream(["foreign"]),
        Send({"id": "garbled", "type": "subscribe", "payload": {"query": VIDEO_STATUS,
                                                                 "variables": {"uuid": "not-a-uuid"}}}),
        Stream(["garbled"]),
        Send({"type": "ping"}), Recv(),
    ], all_of(error_code("NOT_FOUND"), stays_open)),
    # -- limits server: videos stay PENDING, so these transcripts are exact --------------------
    Script("duplicate_operation_id", "limits", [
        Connect(), init(), Recv(), Generate("v"),
        follow("1", "v"), Recv(),
        follow("1", "v"), Closed(),
    ], closes(4409, "Subscriber for 1 already exists")),
    Script("complete_then_reuse_id_on_a_quiet_subscription", "limits", [
        Connect(), init(), Recv(), Generate("v"),
        follow("1", "v"), Recv(),
        Send({"id": "1", "type": "complete"}), Quiet(),
        follow("1", "v"), Recv(),
        Send({"id": "1", "type": "complete"}), Quiet(),
    ], all_of(types_seen("connection_ack", "next", "next"), stays_open)),
    Script("deleted_while_watched", "limits", [
        Connect(), init(), Recv(), Generate("v"),
        follow("cold", "v", FOLLOW_COLD), Recv(), follow("lean", "v"), Recv(),
        Delete("v"), Stream(["cold", "lean"]),
        follow("after", "v"), Stream(["after"]),  # and a new subscriber is told the same
    ], all_of(error_code("NOT_FOUND"), stays_open)),
    Script("aliased_and_uppercase_uuid_subscribers_told_of_the_deletion", "limits", [
        Connect(), init(), Recv(), Generate("v"),
        follow("cold", "v", ALIASED), Recv(),  # the first sight of the document: Strawberry's loop
        follow("lean", "v", ALIASED), Recv(),  # the fast path's lean subscriber from then on
        Send({"id": "upper", "type": "subscribe", "payload": {"query": VIDEO_STATUS,
                                                               "variables": {"uuid": "<<v:upper>>"}}}),
        Recv(),
        Delete("v"), Stream(["cold", "lean", "upper"]),
    ], all_of(error_code("NOT_FOUND"), stays_open)),
    Script("duplicate_id_with_a_malformed_payload", "limits", [
        Connect(), init(), Recv(), Generate("v"),
        follow("1", "v"), Recv(),
        Send({"id": "1", "type": "subscribe", "payload": "again"}), Closed(),
    ], types_seen("connection_ack", "next")),
    Script("duplicate_id_without_payload", "limits", [
        Connect(), init(), Recv(), Generate("v"),
        follow("1", "v"), Recv(),
        # Strawberry looks at the id before it reads the payload: 4409, not 4400.
        Send({"id": "1", "type": "subscribe"}), Closed(),
    ], closes(4409, "Subscriber for 1 already exists")),
    Script("limit_reached_then_a_malformed_subscribe", "limits", [
        Connect(), init(), Recv(), Generate("v"),
        follow("a", "v"), follow("b", "v"), follow("c", "v"), RecvSorted(3),
        # Strawberry looks at the limit before it reads the payload: the limit's error, for "d" only.
        Send({"id": "d", "type": "subscribe"}), Recv(),
        Send({"type": "ping"}), Recv(),
    ], all_of(types_seen("connection_ack", "next", "next", "next", "error", "pong"),
              mentions("Subscription limit reached"))),
    Script("too_many_operations", "limits", [
        Connect(), init(), Recv(), Generate("v"),
        follow("a", "v"), follow("b", "v"), follow("c", "v"), RecvSorted(3),
        follow("d", "v"), Recv(),  # a fourth: refused, that operation only
        subscribe("q", ME), Recv(),  # queries count as well
        Send({"id": "a", "type": "complete"}), Quiet(),
        follow("d", "v"), Recv(),  # room again
        Send({"type": "ping"}), Recv(),
    ], all_of(types_seen("connection_ack", "next", "next", "next", "error", "error", "next", "pong"), stays_open)),
    Script("connection_init_timeout", "limits", [
        Connect(), Send({"type": "ping"}), Recv(),  # a ping does not stop the clock
        Closed(within=3.0),
    ], closes(4408, "Connection initialisation timeout")),
    Script("connection_init_in_time_stops_the_clock", "limits", [
        Connect(), init(), Recv(), Quiet(1.0), Send({"type": "ping"}), Recv(),
    ], all_of(types_seen("connection_ack", "pong"), stays_open)),
    Script("document_too_large", "limits", [
        Connect(), init(), Recv(), Generate("v"),
        follow("big", "v", LARGE_DOCUMENT), Recv(),
        follow("small", "v"), Recv(),  # the socket and the id carry on
    ], all_of(error_code("PAYLOAD_TOO_LARGE"), stays_open)),
    # -- legacy graphql-ws (Strawberry's in both modes) --------------------------------------------
    Script("legacy_basic_flow", "main", [
        Connect([LEGACY_WS]), init(), Recv(),
        start("q", ME), Recv(),  # the legacy protocol runs subscriptions only: one error, no complete
        Generate("v"), follow("1", "v", kind=start), Stream(["1"]),
        Send({"id": "nope", "type": "stop"}), SendText("garbage"), Quiet(),  # both ignored
        Send({"type": "connection_terminate"}), Closed(),
    ], all_of(types_seen("connection_ack", "error", "data", "complete"), closes(1000, ""))),
    Script("legacy_restart_an_id_and_malformed_starts", "limits", [
        Connect([LEGACY_WS]), init(), Recv(), Generate("v"),
        follow("1", "v", kind=start), Recv(),
        follow("1", "v", kind=start), Recv(2),  # the same id again: the first ends (complete), the second starts
        Send({"id": "2", "type": "start", "payload": "x"}), Send({"id": "3", "type": "start"}), Recv(2),
        Send({"type": "start", "payload": {"query": ME}}), SendText("[1]"), Quiet(),  # ignored
        start("big", LARGE_DOCUMENT, uuid="<<v>>"), Recv(),
        Send({"id": "1", "type": "stop"}), Recv(),
    ], all_of(types_seen("connection_ack", "data", "complete", "data"), error_code("PAYLOAD_TOO_LARGE"), stays_open)),
    Script("legacy_init_without_payload_uses_the_header", "main", [
        Connect([LEGACY_WS], header="alice"), Send({"type": "connection_init"}), Recv(),
        Generate("v"), WaitCompleted("v"), follow("1", "v", kind=start), Recv(2),
    ], all_of(types_seen("connection_ack", "data", "complete"), stays_open)),
    Script("legacy_bad_key_refused", "main", [
        Connect([LEGACY_WS]), init("nobody"), Closed(),
    ], all_of(types_seen("connection_error"), closes(1011, ""))),
    Script("legacy_start_before_init", "main", [
        Connect([LEGACY_WS]), start("1", ME), Closed(),
    ], closes(4401, "Unauthorized")),
    Script("legacy_binary_frame", "main", [
        Connect([LEGACY_WS]), init(), Recv(), SendBytes(b"{}"), Closed(),
    ], closes(1002, "WebSocket message type must be text")),
    Script("legacy_stop_restart_and_limit", "limits", [
        Connect([LEGACY_WS]), init(), Recv(), Generate("v"),
        follow("1", "v", kind=start), Recv(),
        Send({"id": "1", "type": "stop"}), Recv(),  # stop says complete
        follow("1", "v", kind=start), Recv(),
        follow("2", "v", kind=start), follow("3", "v", kind=start), RecvSorted(2),
        follow("4", "v", kind=start), Recv(),  # a fourth: refused
        Delete("v"), Stream(["1", "2", "3"]),
    ], all_of(types_seen("connection_ack", "data", "complete", "data", "error"), error_code("NOT_FOUND"))),
    # -- subprotocol negotiation -------------------------------------------------------------------
    Script("no_subprotocol_offered", "main", [
        Connect(None), Closed(),
    ], closes(4406, "Subprotocol not acceptable")),
    Script("unknown_subprotocol_offered", "main", [
        Connect(["graphql-sse", "mqtt"]), Closed(),
    ], closes(4406, "Subprotocol not acceptable")),
    Script("both_subprotocols_offered_client_order_wins", "main", [
        Connect([LEGACY_WS, TRANSPORT_WS]), init(), Recv(), start("q", ME), Recv(),
    ], all_of(types_seen("connection_ack", "error"), stays_open)),
]


# -- playing ---------------------------------------------------------------------------------------

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SERVER = re.compile(r"https?://127\.0\.0\.1:\d+")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


class Player:
    """Plays scripts against one server; ``ctx`` holds its users' keys and the videos made."""

    def __init__(self, server: LiveServer, ctx: dict[str, str], http: httpx.AsyncClient) -> None:
        self.server = server
        self.ctx = ctx
        self.http = http
        self.ws: ClientConnection | None = None
        self.transcript: list[Any] = []
        self.held: list[dict[str, Any]] = []  # received while waiting for other operations' messages
        self.closed = False

    # -- templating and normalising ------------------------------------------------------------

    def fill(self, value: Any) -> Any:
        """``<<name>>`` replaced by the context's value (``<<name:upper>>``: in capitals); unknown names stay
        as they are (``Bearer <<nobody>>`` is a key no one has)."""
        if isinstance(value, str):
            def known(m: re.Match[str]) -> str:
                filled = self.ctx.get(m.group(1), m.group(1))
                return filled.upper() if m.group(2) == ":upper" else filled
            return re.sub(r"<<(\w+)(:upper)?>>", known, value)
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        return value

    def normal(self, value: Any) -> Any:
        if isinstance(value, str):
            for name, known in self.ctx.items():
                if known and len(known) >= 8:
                    value = value.replace(known, f"<{name}>")
            value = UUID.sub("<uuid>", value)
            value = SERVER.sub("<server>", value)
            return TIMESTAMP.sub("<timestamp>", value)
        if isinstance(value, list):
            return [self.normal(v) for v in value]
        if isinstance(value, dict):
            return {k: self.normal(v) for k, v in value.items()}
        return value

    # -- receiving -------------------------------------------------------------------------------

    async def _receive(self, within: float) -> dict[str, Any] | None:
        """The next message (held ones first); None once the server has closed (the close is recorded)."""
        if self.held:
            return self.held.pop(0)
        if self.closed:
            return None
        assert self.ws is not None
        try:
            raw = await asyncio.wait_for(self.ws.recv(), within)
        except ConnectionClosed:
            self._record_close()
            return None
        if isinstance(raw, bytes):
            return {"<binary frame>": raw.decode(errors="replace")}
        try:
            message: dict[str, Any] = json.loads(raw)
        except ValueError:
            return {"<not json>": raw}
        return message

    def _record_close(self) -> None:
        assert self.ws is not None
        self.closed = True
        self.transcript.append(["close", self.ws.close_code, self.ws.close_reason])

    async def recv(self, n: int, *, record: bool = True) -> list[dict[str, Any]]:
        """Up to ``n`` messages (fewer if the server closes or goes quiet; both are recorded)."""
        got = []
        for _ in range(n):
            try:
                message = await self._receive(RECEIVE_WITHIN)
            except TimeoutError:
                self.transcript.append(["timeout", "no message"])
                break
            if message is None:
                break
            got.append(message)
            if record:
                self.transcript.append(["recv", self.normal(message)])
        return got

    async def stream(self, ops: list[Any], within: float) -> None:
        """Each operation's messages until it ends, reduced to a shape that timing does not change."""
        messages: dict[Any, list[dict[str, Any]]] = {op: [] for op in ops}
        pending = set(ops)
        others: list[dict[str, Any]] = []
        deadline = time.monotonic() + within
        while pending:
            try:
                message = await self._receive(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                self.transcript.append(["timeout", sorted(pending, key=str)])
                break
            if message is None:
                break
            op = message.get("id")
            if op in pending:
                messages[op].append(message)
                if message.get("type") in ("complete", "error"):
                    pending.discard(op)
            else:
                others.append(message)
        self.held = others + self.held
        for op in ops:
            self.transcript.append(["stream", op, *self._shape(messages[op])])

    def _shape(self, messages: list[dict[str, Any]]) -> list[Any]:
        """The snapshot and the changes that are not terminal, masked and collapsed into one token; the
        rest as they are; and whether each change was newer than the one before (as both modes promise)."""
        tokens: list[Any] = []
        positions = []
        for message in messages:
            token = self.normal(message)
            payload = message.get("payload")
            data = payload.get("data") if isinstance(payload, dict) else None
            video = data.get("videoStatus") if isinstance(data, dict) else None
            if message.get("type") in ("next", "data") and isinstance(video, dict) and "status" in video:
                positions.append((RANK[video["status"]], video.get("progress", 0)))
                if video["status"] not in TERMINAL:
                    token = json.loads(json.dumps(token))
                    shown = token["payload"]["data"]["videoStatus"]
                    shown.update({key: "<live>" for key in ("status", "progress") if key in shown})
            if not tokens or tokens[-1] != token:
                tokens.append(token)
        return [tokens, {"strictly_newer": positions == sorted(set(positions))}]

    # -- the steps -------------------------------------------------------------------------------

    async def play(self, script: Script) -> list[Any]:
        try:
            for step in script.steps:
                await self.step(step)
            if self.ws is not None and not self.closed:
                # Anything the server still sent unasked is part of the transcript too.
                for message in self.held:
                    self.transcript.append(["recv", self.normal(message)])
                self.transcript.append(["end", "open"])
        finally:
            if self.ws is not None:
                await self.ws.close()
        return self.transcript

    async def step(self, step: Step) -> None:
        if isinstance(step, Connect):
            headers = {}
            if step.header is not None:
                headers["Authorization"] = f"Bearer {self.ctx.get(step.header, step.header)}"
            try:
                self.ws = await connect(ws_url(self.server.url), subprotocols=step.protocols,  # type: ignore[arg-type]
                                        additional_headers=headers, open_timeout=RECEIVE_WITHIN, compression=None)
            except InvalidHandshake as exc:
                self.transcript.append(["handshake refused", type(exc).__name__])
                self.closed = True
                return
            self.transcript.append(["accepted", self.ws.subprotocol])
        elif isinstance(step, Send | SendText | SendBytes):
            if self.closed:
                self.transcript.append(["not sent: closed"])
                return
            assert self.ws is not None
            data: str | bytes = (json.dumps(self.fill(step.message)) if isinstance(step, Send)
                                 else step.text if isinstance(step, SendText) else step.data)
            try:
                await self.ws.send(data)
            except ConnectionClosed:
                self._record_close()
        elif isinstance(step, Recv):
            await self.recv(step.n)
        elif isinstance(step, RecvSorted):
            got = [self.normal(m) for m in await self.recv(step.n, record=False)]
            for message in sorted(got, key=lambda m: json.dumps(m, sort_keys=True)):
                self.transcript.append(["recv", message])
        elif isinstance(step, Stream):
            await self.stream(step.ops, step.within)
        elif isinstance(step, Closed):
            while True:
                try:
                    message = await self._receive(step.within)
                except TimeoutError:
                    self.transcript.append(["timeout", "no close"])
                    return
                if message is None:
                    return
                self.transcript.append(["recv", self.normal(message)])
        elif isinstance(step, Quiet):
            try:
                message = await self._receive(step.seconds)
            except TimeoutError:
                self.transcript.append(["quiet"])
                return
            if message is not None:
                self.transcript.append(["recv while quiet expected", self.normal(message)])
        elif isinstance(step, Generate):
            body = await self.graphql(GENERATE, {"input": REQUEST}, step.user)
            self.ctx[step.name] = body["data"]["generateVideo"]["uuid"]
        elif isinstance(step, Delete):
            body = await self.graphql(DELETE, {"uuid": self.ctx[step.name]}, step.user)
            self.transcript.append(["http deleteVideo", self.normal(body)])
        elif isinstance(step, WaitCompleted):
            deadline = time.monotonic() + STREAM_WITHIN
            while True:
                body = await self.graphql("query($u: ID!) { videoTask(uuid: $u) { status } }",
                                          {"u": self.ctx[step.name]}, step.user)
                if body["data"]["videoTask"]["status"] in TERMINAL or time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.1)
        else:  # pragma: no cover
            raise TypeError(step)

    async def graphql(self, query: str, variables: dict[str, Any], user: str) -> dict[str, Any]:
        r = await self.http.post("/graphql", json={"query": query, "variables": variables},
                                 headers={"Authorization": f"Bearer {self.ctx[user]}"})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


# -- the servers -----------------------------------------------------------------------------------

async def _users(database_url: str) -> dict[str, str]:
    # As conftest's make_user does.
    db = Database(create_engine(database_url))
    try:
        keys = {}
        for name in ("alice", "bob"):
            _, issued = await accounts.create_user(f"{name}@example.test", credits=1000, db=db)
            keys[name] = issued.key
        return keys
    finally:
        await db.dispose()


async def _warm_up(player: Player) -> None:
    """VIDEO_STATUS, once through the server: a remembered document, so the fast path's later
    subscriptions to it are lean subscribers (the first of a document goes to Strawberry's loop)."""
    steps: list[Step] = [Connect(), init(), Recv(), Generate("warm"), follow("w", "warm"), Recv(),
                         Send({"id": "w", "type": "complete"})]
    for step in steps:
        await player.step(step)
    assert player.transcript[-1][1]["type"] == "next", player.transcript
    assert player.ws is not None
    await player.ws.close()


async def _play_all(server: LiveServer, ctx: dict[str, str], scripts: list[Script]) -> dict[str, list[Any]]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        await _warm_up(Player(server, ctx, http))
        transcripts = {}
        for script in scripts:
            transcripts[script.name] = await Player(server, dict(ctx), http).play(script)
        return transcripts


def _run(coroutine: Any) -> Any:
    # In a thread of its own: no event loop of pytest-asyncio's may be running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _settings(root: Path, fastpath: bool, **overrides: Any) -> Settings:
    return Settings(database_url=f"sqlite+aiosqlite:///{root}/kensa.db", media_dir=root / "media",
                    local_generation_seconds=1.5, poll_interval_seconds=0.2, claim_interval_seconds=0.1,
                    lease_seconds=3.0, auth_cache_seconds=0.0, graphql_fastpath=fastpath, **overrides)


@pytest.fixture(scope="module")
def transcripts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, list[Any]]]]:
    """mode -> script name -> normalised transcript; one mode's servers after the other's."""
    played: dict[str, dict[str, list[Any]]] = {}
    for mode, fastpath in MODES.items():
        played[mode] = {}
        for kind, run_worker, overrides in (("main", True, {}), ("limits", False, LIMITS)):
            settings = _settings(tmp_path_factory.mktemp(f"{mode}-{kind}"), fastpath, **overrides)
            server = LiveServer(settings, run_worker=run_worker)
            server.start()  # on SQLite the app migrates its database as it starts
            try:
                ctx = _run(_users(settings.database_url))
                played[mode].update(_run(_play_all(server, ctx, [s for s in SCRIPTS if s.server == kind])))
            finally:
                server.stop()
    # Kept for reading when a comparison fails (the assertion's diff shows only where they part).
    (tmp_path_factory.getbasetemp() / "ws_transcripts.json").write_text(json.dumps(played, indent=1))
    yield played


# -- the tests -------------------------------------------------------------------------------------

# Differences that are intended, by script name: a function asserting exactly that difference
# (reference transcript, fast path transcript), with the reason next to it. None so far: the fast
# path speaks graphql-transport-ws as Strawberry's handlers do, message for message.
KNOWN_DIFFERENCES: dict[str, Callable[[list[Any], list[Any]], None]] = {}


def test_there_are_enough_scripts() -> None:
    assert len(SCRIPTS) >= 25
    assert len({s.name for s in SCRIPTS}) == len(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_both_modes_send_the_same(script: Script, transcripts: dict[str, dict[str, list[Any]]],
                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    reference, fastpath = transcripts["reference"][script.name], transcripts["fastpath"][script.name]
    known = KNOWN_DIFFERENCES.get(script.name)
    if known is not None:
        known(reference, fastpath)
        return
    assert fastpath == reference, f"all transcripts: {tmp_path_factory.getbasetemp() / 'ws_transcripts.json'}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s.name)
def test_the_reference_does_what_the_script_is_about(script: Script,
                                                    transcripts: dict[str, dict[str, list[Any]]]) -> None:
    transcript = transcripts["reference"][script.name]
    assert not [entry for entry in transcript if entry[0] == "timeout"], transcript
    for entry in transcript:
        if entry[0] == "stream":
            assert entry[3] == {"strictly_newer": True}, entry
    script.anchor(transcript)
