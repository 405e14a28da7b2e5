"""Lean ``videoStatus`` subscribers: a registration in the fan-out, no task or stream per operation.

With ten thousand subscribers, whatever one holds between changes is held ten thousand times: a
task, its coroutines, a stream generator, a watch and its future cost about 2 KB and 30 objects
for the cyclic collector each. A subscription to a document Strawberry has parsed and validated
before (see fastpath/documents.py), whose root field turns out to be ``videoStatus``, is
followed here instead: the operation becomes a ``Subscriber``, a watcher of its video registered
in the process's fan-out, which is handed each change synchronously by the publisher and sends
it straight to its socket. A change is executed once per operation and variables for all of its
subscribers and encoded once (``_messages``); ASGI's send completes at once when the socket can
take it, and only a socket that cannot (a slow consumer) gets a task, which sends the latest
change once it can: latest wins, as with services/following.py's Watch.

What is sent follows the same rules as Strawberry's path (services/following.py's ``Following``:
the snapshot, one ``next`` per change that is news, ``complete`` at a terminal status; a
deletion or an error raised while following as a ``next`` with errors, then ``complete``).
Whatever is not the plain case goes back to Strawberry before anything is sent: a document not
seen before, refused variables or authorisation, another root field.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable
from inspect import isawaitable
from typing import Any, Generic, Protocol, TypeVar

from graphql import ExecutionResult, FieldNode, GraphQLError, create_source_event_stream, execute_subscription_event
from graphql.language import OperationType as OperationKind
from strawberry import Schema
from strawberry.types import ExecutionResult as StrawberryResult

from kensa_gql.api.graphql.context import Context
from kensa_gql.api.graphql.encoding import dumps
from kensa_gql.api.graphql.fastpath.documents import PreparedDocuments, chosen_operation
from kensa_gql.api.graphql.fastpath.strawberry_internals import core_schema, rendered_event
from kensa_gql.api.graphql.videos import Video, VideoStream
from kensa_gql.api.graphql.ws.frames import complete_text, next_encoded, next_text, payload_of
from kensa_gql.domain import videos as domain
from kensa_gql.domain.watching import Watcher, Watchers
from kensa_gql.services import videos as service
from kensa_gql.services.following import Following, Moved, place_of

log = logging.getLogger("kensa_gql.websocket")
FEEDS = 256  # (operation, variables) pairs remembered for sharing; a subscriber keeps its own alive
MEMORY = 256  # changes whose messages are remembered; each is sent to its subscribers within moments

_Key = tuple[int, tuple[tuple[str, Any], ...]]
V = TypeVar("V")


class Socket(Protocol):
    """What a subscriber needs of its socket (ws/connection.py's Connection)."""

    @property
    def schema(self) -> Schema: ...

    @property
    def watchers(self) -> Watchers: ...

    def context(self) -> Context: ...

    def forget(self, op: Any) -> None: ...

    async def send_text(self, text: str) -> None: ...

    def push(self, text: str) -> Awaitable[None] | None: ...


class IdentityMemo(Generic[V]):
    """Values for the last few objects, by identity. Holding the object keeps its id unique."""

    def __init__(self, size: int = MEMORY) -> None:
        self._size = size
        self._entries: OrderedDict[int, tuple[object, V]] = OrderedDict()

    def get(self, obj: object) -> V | None:
        entry = self._entries.get(id(obj))
        return entry[1] if entry is not None and entry[0] is obj else None

    def put(self, obj: object, value: V) -> None:
        self._entries[id(obj)] = (obj, value)
        self._entries.move_to_end(id(obj))
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class Feed:
    """What the subscribers of one operation with the same variables share: how to execute a change."""

    __slots__ = ("document", "key", "name", "places", "query", "variables")

    def __init__(self, key: _Key, document: Any, name: str | None, query: str, variables: Any,
                 places: bool) -> None:
        self.key = key
        self.document = document
        self.name = name
        self.query = query
        self.variables = variables  # the first subscriber's: equal once coerced, so the result is equal
        self.places = places  # whether the selection shows queuePosition (the resolver's VideoStream.places)


_feeds: OrderedDict[_Key, Feed] = OrderedDict()


def _feed(key: _Key, document: Any, name: str | None, query: str, variables: Any, places: bool) -> Feed:
    feed = _feeds.get(key)
    if feed is None:
        feed = _feeds[key] = Feed(key, document, name, query, variables, places)
        while len(_feeds) > FEEDS:
            _feeds.popitem(last=False)
    else:
        _feeds.move_to_end(key)
    return feed


def _memo_key(executor: Any) -> _Key | None:
    try:
        key = (id(executor.operation), tuple(sorted(executor.variable_values.coerced.items())))
        hash(key)
    except TypeError:
        return None
    return key


async def start(socket: Socket, documents: PreparedDocuments, op_id: str, query: Any, variables: Any,
                name: Any) -> Subscriber | None:
    """A subscriber for this operation, authorised and ready to follow; None to let Strawberry run it."""
    if not documents.enabled or not isinstance(query, str) or (name is not None and not isinstance(name, str)) or (
            variables is not None and not isinstance(variables, dict)):
        return None
    document = documents.get(query)
    chosen = None if document is None else chosen_operation(document, name)
    if chosen is None:
        return None
    node, operation_name = chosen
    selections = node.selection_set.selections
    if node.operation is not OperationKind.SUBSCRIPTION or len(selections) != 1 or not isinstance(
            selections[0], FieldNode) or selections[0].directives:
        return None
    executor = _build(socket, document, operation_name, variables, None, socket.context())
    if isinstance(executor, list):  # variables refused: Strawberry reports it
        return None
    # Runs the root field's resolver: authorisation, as Strawberry would have it done.
    source = create_source_event_stream(executor)
    if isawaitable(source):
        source = await source
    if not isinstance(source, VideoStream):  # refused (NOT_FOUND...), or another field: Strawberry answers
        return None
    key = _memo_key(executor)
    if key is None:
        return None
    feed = _feed(key, document, operation_name, documents.text(query), variables, source.places)
    return Subscriber(socket, op_id, feed, source.uuid)


def _build(socket: Socket, document: Any, name: str | None, variables: Any, root_value: Any,
           context: Context) -> Any:
    """What Strawberry has graphql-core build for a subscription (``root_value``: the event)."""
    schema = socket.schema
    return schema.execution_context_class.build(core_schema(schema), document, root_value, context,
                                                variables, name, operation_extensions=None)


# One change's messages, by feed (its data's JSON) and by (feed, operation id): every subscriber
# with the same operation id (clients mostly say "1") sends the very same string.
_messages: IdentityMemo[dict[Any, str]] = IdentityMemo()


class Subscriber(Watcher):
    """One lean ``videoStatus`` operation on one socket: it sends each newer change of its video itself."""

    __slots__ = ("completed", "feed", "following", "id", "pending", "socket", "task")

    def __init__(self, socket: Socket, op_id: str, feed: Feed, uuid: str) -> None:
        super().__init__(uuid, socket.watchers)
        self.socket = socket
        self.id = op_id
        self.feed = feed
        self.following: Following | None = None  # None until the snapshot is sent
        self.completed = False
        self.pending: domain.Video | Moved | None = None  # the latest change not sent yet (while busy)
        # While starting, or finishing a send the socket could not take at once: changes wait in pending.
        self.task: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        """Ended by the client or the socket's end: no more changes."""
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
            context = self.socket.context()
            try:
                snapshot = await service.get_video(self.uuid, await context.principal(), deps=context.deps)
            except Exception as exc:  # raised by the source: reported like Strawberry, then complete
                await self._failed(exc, context)
                return
            # (no place unless the selection shows it: then the video is never "waiting" to the
            # fan-out, and a move is no event)
            place = await place_of(snapshot, deps=context.deps) if self.feed.places else None
            self.seen(snapshot, place)
            self.following = Following(snapshot)
            await self._send(snapshot, context, place)
            if self.following.done:
                await self._complete()
                return
            del snapshot, context
            await self._catch_up()
        finally:
            if self.task is asyncio.current_task():
                self.task = None

    def changed(self, video: domain.Video) -> None:
        if self.completed:
            return
        if self.task is not None or self.following is None:
            self.pending = video  # the task in flight sends the latest when it is done
            return
        try:
            news = self.following.news(video)
        except Exception:  # deleted: the error is rendered by the schema's extensions, in a task
            self.pending = video
            self._spawn(self._catch_up())
            return
        if not news:
            return
        text = self._shared_text(video)
        if text is None:  # not that simple (an error in the result...): executed in full, in a task
            self._spawn(self._send_then_catch_up(video))
            return
        texts = [text]
        if self.following.done:
            texts.append(self._end())
        for i, each in enumerate(texts):
            suspended = self.socket.push(each)
            if suspended is not None:
                self._spawn(self._finish(suspended, texts[i + 1:]))
                return

    def moved(self, video: domain.Video, place: int) -> None:
        if self.completed or self.following is None or self.following.done:
            return
        if self.task is not None:
            self.pending = Moved(video, place)  # sent by the task in flight, unless a newer change comes
            return
        # One read of the fan-out hands every watcher of this video the same object and place, so
        # the message is executed and encoded once for them, as a change is.
        text = self._shared_text(video, place)
        if text is None:
            self._spawn(self._send_then_catch_up(video, place))
            return
        suspended = self.socket.push(text)
        if suspended is not None:
            self._spawn(self._finish(suspended, []))

    def _shared_text(self, video: domain.Video, place: int | None = None) -> str | None:
        """This change's ``next`` for this subscriber, executed and encoded once; None if not that simple."""
        messages = _messages.get(video)
        if messages is None:
            messages = {}
            _messages.put(video, messages)
        key = (self.feed, self.id)
        text = messages.get(key)
        if text is not None:
            return text
        data = messages.get(self.feed)
        if data is None:
            if place is None and video.status is domain.VideoStatus.PENDING and self.feed.places:
                return None  # its place must be read first: _send does
            outcome = execute_subscription_event(
                _build(self.socket, self.feed.document, self.feed.name, self.feed.variables,
                       Video.placed(video, place), self.socket.context()))
            if isawaitable(outcome):
                with contextlib.suppress(AttributeError):
                    outcome.close()  # type: ignore[attr-defined]
                return None
            if outcome.errors or outcome.data is None:
                return None
            data = messages[self.feed] = dumps(outcome.data)
        text = messages[key] = next_encoded(self.id, data)
        return text

    def _spawn(self, work: Any) -> None:
        self.task = asyncio.create_task(work)
        self.task.add_done_callback(_retrieved)

    async def _finish(self, suspended: Awaitable[None], rest: list[str]) -> None:
        try:
            await suspended
            for text in rest:
                await self.socket.send_text(text)
            await self._catch_up()
        finally:
            if self.task is asyncio.current_task():
                self.task = None

    async def _send_then_catch_up(self, video: domain.Video, place: int | None = None) -> None:
        try:
            await self._send(video, self.socket.context(), place)
            if self.following is not None and self.following.done:
                await self._complete()
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

    async def _deliver(self, video: domain.Video | Moved) -> None:
        assert self.following is not None
        context = self.socket.context()
        if isinstance(video, Moved):
            if not self.following.done:
                await self._send(video.video, context, video.place)
            return
        try:
            if not self.following.news(video):
                return
        except Exception as exc:
            await self._failed(exc, context)
            return
        await self._send(video, context)
        if self.following.done:
            await self._complete()

    async def _send(self, video: domain.Video, context: Context, place: int | None = None) -> None:
        """``video`` executed for this operation and sent, errors rendered as Strawberry renders them."""
        if place is None and self.feed.places:
            place = await place_of(video, deps=context.deps)  # None at once unless it waits
        outcome = execute_subscription_event(_build(self.socket, self.feed.document, self.feed.name,
                                                    self.feed.variables, Video.placed(video, place), context))
        result: ExecutionResult = await outcome if isawaitable(outcome) else outcome
        await self._send_result(result, context)

    async def _send_result(self, result: ExecutionResult, context: Context) -> None:
        if result.errors:
            rendered = await rendered_event(self.socket.schema, result, query=self.feed.query,
                                            variables=self.feed.variables, context=context,
                                            operation_name=self.feed.name)
        else:
            rendered = StrawberryResult(data=result.data, errors=None)
        await self.socket.send_text(next_text(self.id, payload_of(rendered)))

    async def _failed(self, exc: Exception, context: Context) -> None:
        error = exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)
        await self._send_result(ExecutionResult(None, [error]), context)
        await self._complete()

    def _end(self) -> str:
        """Done following: the id is free again (before the last message, as Strawberry); its complete."""
        self.stop()
        self.completed = True
        self.socket.forget(self)
        return complete_text(self.id)

    async def _complete(self) -> None:
        if not self.completed:
            await self.socket.send_text(self._end())


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()
