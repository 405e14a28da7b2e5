"""Lean ``videoStatus`` subscribers: a registration in the fan-out, no task or stream per operation.

With ten thousand subscribers, whatever one holds between changes is held ten thousand times: a
task, its coroutines, a stream generator, a watch and its future cost about 2 KB and 30 objects
for the cyclic collector each. A subscription to a document Strawberry has parsed and validated
before (see prepared.py), whose root field turns out to be ``videoStatus``, is followed here
instead: the operation becomes a ``Subscriber``, a watcher of its video registered with the
process's ``VideoEvents``, which is handed each change synchronously by the publisher and sends
it straight to its socket. A change is executed once per operation and variables for all of its
subscribers and encoded once (fanout.py); ASGI's send completes at once when the socket can take
it, and only a socket that cannot (a slow consumer) gets a task, which sends the latest change
once it can: latest wins, as with a Watch.

The messages are exactly what Strawberry's loop sends for the same operation (the snapshot, one
``next`` per newer change, ``complete`` at a terminal status; a deletion or an error raised while
following as a ``next`` with errors, then ``complete``). Whatever is not the plain case goes back
to Strawberry before anything is sent: a document not seen before, refused variables or
authorisation, another root field.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from graphql import ExecutionResult, FieldNode, GraphQLError, create_source_event_stream, execute_subscription_event
from graphql.language import OperationType as OperationKind
from strawberry.types import ExecutionResult as StrawberryResult
from strawberry.types.graphql import OperationType

from kensa_gql.adapters.pubsub import Watcher
from kensa_gql.api.graphql import errors, fanout
from kensa_gql.api.graphql.prepared import PreparedDocuments, chosen_operation
from kensa_gql.api.graphql.videos import Following, Video, moves_on, position
from kensa_gql.domain import videos as domain
from kensa_gql.services import videos as service

if TYPE_CHECKING:
    from kensa_gql.api.graphql.connection import Connection
    from kensa_gql.api.graphql.context import Context

log = logging.getLogger("kensa_gql.websocket")
FEEDS = 256  # (operation, variables) pairs remembered for sharing; a subscriber keeps its own alive

_Key = tuple[int, tuple[tuple[str, Any], ...]]


class Feed:
    """What the subscribers of one operation with the same variables share: how to execute a change."""

    __slots__ = ("document", "key", "name", "query", "variables")

    def __init__(self, key: _Key, document: Any, name: str | None, query: str, variables: Any) -> None:
        self.key = key
        self.document = document
        self.name = name
        self.query = query
        self.variables = variables  # the first subscriber's: equal once coerced, so the result is equal


_feeds: OrderedDict[_Key, Feed] = OrderedDict()


def _feed(key: _Key, document: Any, name: str | None, query: str, variables: Any) -> Feed:
    feed = _feeds.get(key)
    if feed is None:
        feed = _feeds[key] = Feed(key, document, name, query, variables)
        while len(_feeds) > FEEDS:
            _feeds.popitem(last=False)
    else:
        _feeds.move_to_end(key)
    return feed


async def start(conn: Connection, op_id: str, query: Any, variables: Any, name: Any) -> Subscriber | None:
    """A subscriber for this operation, authorised and ready to follow; None to let Strawberry run it."""
    schema = conn.view.schema
    documents: PreparedDocuments | None = getattr(schema, "prepared", None)
    if documents is None or not documents.enabled or not isinstance(query, str):
        return None
    document = documents.get(query)
    chosen = None if document is None else chosen_operation(document, name if isinstance(name, str) else None)
    if chosen is None or (name is not None and not isinstance(name, str)):
        return None
    node, operation_name = chosen
    selections = node.selection_set.selections
    if node.operation is not OperationKind.SUBSCRIPTION or len(selections) != 1 or not isinstance(
            selections[0], FieldNode) or selections[0].directives:
        return None
    executor = _build(conn, document, operation_name, variables, None)
    if isinstance(executor, list):  # variables refused: Strawberry reports it
        return None
    # Runs the root field's resolver: authorisation, as Strawberry would have it done.
    source = create_source_event_stream(executor)
    if isawaitable(source):
        source = await source
    if not isinstance(source, Following):  # refused (NOT_FOUND...), or another field: Strawberry answers
        return None
    key = fanout.memo_key(executor)
    if key is None:
        return None
    feed = _feed(key, document, operation_name, documents.text(query), variables)
    return Subscriber(conn, op_id, feed, source.uuid)


def _build(conn: Connection, document: Any, name: str | None, variables: Any, root_value: Any,
           context: Context | None = None) -> Any:
    """What Strawberry has graphql-core build for a subscription (``root_value``: the event)."""
    schema: Any = conn.view.schema
    return schema.execution_context_class.build(schema._schema, document, root_value, context or conn.context(),
                                                variables, name, operation_extensions=None)


def payload_of(result: StrawberryResult) -> dict[str, Any]:
    """The payload of a ``next`` (``data`` in the legacy protocol) for ``result``, as Strawberry sends it."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return payload


# One change's messages, by (feed, operation id, protocol): every subscriber with the same
# operation id (clients mostly say "1") sends the very same string.
_messages: fanout.IdentityMemo[dict[Any, str]] = fanout.IdentityMemo()


class Subscriber(Watcher):
    """One lean ``videoStatus`` operation on one socket: it sends each newer change of its video itself."""

    __slots__ = ("at", "completed", "conn", "feed", "id", "pending", "task")

    def __init__(self, conn: Connection, op_id: str, feed: Feed, uuid: str) -> None:
        super().__init__(uuid, conn.watchers)
        self.conn = conn
        self.id = op_id
        self.feed = feed
        self.at: tuple[int, int] | None = None   # the position last sent; None until the snapshot is
        self.completed = False
        self.pending: domain.Video | None = None  # the latest change not sent yet (while busy)
        # While starting, or finishing a send the socket could not take at once: changes wait in pending.
        self.task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        """Ended by the client or the socket's end: no more changes (the legacy protocol then says complete)."""
        self.stop()
        self.pending = None
        task, self.task = self.task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def follow(self) -> None:
        """Registered first, then the snapshot read (so nothing is missed) and sent; then live."""
        self.task = asyncio.current_task()
        self.start()
        try:
            context = self.conn.context()
            try:
                snapshot = await service.get_video(self.uuid, await context.principal(), deps=context.deps)
            except Exception as exc:  # raised by the source: reported like Strawberry, then complete
                await self._failed(exc, context)
                return
            self.at = position(snapshot)
            result = await _executed(_build(self.conn, self.feed.document, self.feed.name, self.feed.variables,
                                            Video.from_domain(snapshot), context))
            await self._send_result(result, context)
            if snapshot.status.is_terminal:
                await self._complete()
                return
            del snapshot, result, context
            await self._catch_up()
        finally:
            if self.task is asyncio.current_task():
                self.task = None

    def changed(self, video: domain.Video) -> None:
        if self.completed:
            return
        if self.task is not None or self.at is None:
            self.pending = video  # the task in flight sends the latest when it is done
            return
        try:
            news = moves_on(video, self.at)
        except Exception:  # deleted: the error is rendered by the schema's extensions, in a task
            news = True
            text = None
        else:
            text = self._shared_text(video) if news else None
        if not news:
            return
        if text is None:
            self.pending = video
            self._spawn(self._catch_up())
            return
        self.at = position(video)
        texts = [text]
        if video.status.is_terminal:
            texts.append(self._end())
        for i, each in enumerate(texts):
            suspended = self.conn.push(each)
            if suspended is not None:
                self._spawn(self._finish(suspended, texts[i + 1:]))
                return

    def _shared_text(self, video: domain.Video) -> str | None:
        """This change's ``next`` for this subscriber, executed and encoded once; None if not that simple."""
        messages = _messages.get(video)
        if messages is None:
            messages = {}
            _messages.put(video, messages)
        key = (self.feed, self.id, self.conn.legacy)
        text = messages.get(key)
        if text is not None:
            return text
        data = messages.get(self.feed)
        if data is None:
            outcome = execute_subscription_event(
                _build(self.conn, self.feed.document, self.feed.name, self.feed.variables,
                       fanout.shared_video(video, Video.from_domain)))
            if isawaitable(outcome):
                with contextlib.suppress(AttributeError):
                    outcome.close()  # type: ignore[attr-defined]
                return None
            if outcome.errors or outcome.data is None:
                return None
            data = messages[self.feed] = fanout.dumps(outcome.data)
        text = messages[key] = self.conn.next_encoded(self.id, data)
        return text

    def _spawn(self, work: Any) -> None:
        self.task = asyncio.create_task(work)
        self.task.add_done_callback(_retrieved)

    async def _finish(self, suspended: Any, rest: list[str]) -> None:
        try:
            await suspended
            for text in rest:
                await self.conn.send_text(text)
            await self._catch_up()
        finally:
            if self.task is asyncio.current_task():
                self.task = None

    async def _catch_up(self) -> None:
        """Send the pending change, and whichever arrives meanwhile, until none is left."""
        try:
            while not self.completed and (video := self.pending) is not None:
                self.pending = None
                await self._deliver(video)
        except Exception:
            log.exception("following video %s failed", self.uuid)
            with contextlib.suppress(Exception):
                await self._complete()
        finally:
            if self.task is asyncio.current_task():
                self.task = None

    async def _deliver(self, video: domain.Video) -> None:
        assert self.at is not None
        context = self.conn.context()
        try:
            if not moves_on(video, self.at):
                return
        except Exception as exc:
            await self._failed(exc, context)
            return
        self.at = position(video)
        result = await _executed(_build(self.conn, self.feed.document, self.feed.name, self.feed.variables,
                                        fanout.shared_video(video, Video.from_domain), context))
        await self._send_result(result, context)
        if video.status.is_terminal:
            await self._complete()

    async def _send_result(self, result: ExecutionResult, context: Context) -> None:
        if result.errors:
            rendered = await errors.rendered(self.conn.view.schema, result, query=self.feed.query,
                                             variables=self.feed.variables, context=context, root_value=None,
                                             operation_name=self.feed.name,
                                             operation_type=OperationType.SUBSCRIPTION)
        else:
            rendered = StrawberryResult(data=result.data, errors=None)
        await self.conn.send_text(self.conn.next_text(self.id, payload_of(rendered)))

    async def _failed(self, exc: Exception, context: Context) -> None:
        error = exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)
        await self._send_result(ExecutionResult(None, [error]), context)
        await self._complete()

    def _end(self) -> str:
        """Done following: the id is free again (before the last message, as Strawberry); its complete."""
        self.stop()
        self.completed = True
        self.conn.forget(self)
        return self.conn.complete_text(self.id)

    async def _complete(self) -> None:
        if not self.completed:
            await self.conn.send_text(self._end())


async def _executed(executor: Any) -> ExecutionResult:
    outcome = execute_subscription_event(executor)
    result: ExecutionResult = await outcome if isawaitable(outcome) else outcome
    return result


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
