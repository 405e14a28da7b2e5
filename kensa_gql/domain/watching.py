"""Following one video's changes: where a watcher stands, so news reaches it once and in order.

Pure: no I/O and no event loop. The process's event fan-out (adapters/pubsub.py) offers every
change of a video to the watchers registered for it; what a watcher does with news is its own
business (services/following.py waits for it; the WebSocket transport sends it at once).

A waiting (PENDING) video's place in the queue moves without any change of its own: the fan-out
recomputes the places of the waiting videos its watchers follow and offers each with
``offer_place``; a watcher hears of a place only when it differs from the last one it had.
"""

from __future__ import annotations

from kensa_gql.domain.videos import Video, VideoStatus

# How far along each status is: a video only ever moves forward through these.
STAGE = {VideoStatus.PENDING: 0, VideoStatus.GENERATING: 1, VideoStatus.UPLOADING: 2,
         VideoStatus.COMPLETED: 3, VideoStatus.FAILED: 3, VideoStatus.CANCELLED: 3}
_TERMINAL = 3
_WAITING = (False, 0, 0)


def _position(video: Video) -> tuple[bool, int, int]:
    """How far along a snapshot is; a video only ever moves forward in this order.

    Deletion comes first: a delete reads the video in its own transaction, so on PostgreSQL its
    snapshot can be older than a status change committed meanwhile, yet it must still get through.
    """
    return video.deleted, STAGE[video.status], video.progress


class Watcher:
    """Anything that follows one video: registered with its video's group while it is started.

    Holds only where the video stood at the last offer, so that events from several processes
    (and database re-reads), arriving out of order or twice, reach ``changed`` once each and in
    order. Slotted on purpose: a process may hold ten thousand of them.
    """

    __slots__ = ("_place", "_position", "_watchers", "uuid")

    def __init__(self, uuid: str, watchers: Watchers | None = None) -> None:
        self.uuid = uuid
        self._watchers = {} if watchers is None else watchers  # None: a watcher nobody offers to
        self._position: tuple[bool, int, int] | None = None
        self._place: int | None = None  # the last queue place this watcher had (None: unknown)

    def start(self) -> None:
        group = self._watchers.get(self.uuid)
        if group is None:
            group = self._watchers[self.uuid] = set()
        elif group:
            # The group's uuid string, not this one's equal copy: one string per video, not per watcher.
            self.uuid = next(iter(group)).uuid
        group.add(self)

    def stop(self) -> None:
        group = self._watchers.get(self.uuid)
        if group is not None:
            group.discard(self)
            if not group:
                del self._watchers[self.uuid]

    def offer(self, video: Video) -> None:
        position = _position(video)
        # Anything not ahead of what this watcher already has is old news, and nothing follows a
        # terminal status.
        if self._position is not None and (position <= self._position or self._position[1] == _TERMINAL):
            return
        self._position = position
        if position != _WAITING:
            self._place = None
        self.changed(video)

    def seen(self, snapshot: Video, place: int | None) -> None:
        """The snapshot this watcher read itself (and its queue place, if waiting): not news, but a start."""
        position = _position(snapshot)
        if self._position is None or position > self._position:
            self._position = position
        if self._position == _WAITING:
            self._place = place

    @property
    def waiting(self) -> bool:
        """Whether the video waits in the queue with a place this watcher was given (``seen``)."""
        return self._place is not None and self._position == _WAITING

    def offer_place(self, video: Video, place: int) -> None:
        """A recomputed queue place of this waiting video: passed on only if it moved."""
        if self._place is None or self._position != _WAITING or _position(video) != _WAITING or place == self._place:
            # no snapshot's place seen yet (it will be the news), started, ended or deleted meanwhile
            # (its own event says so), or unmoved
            return
        self._place = place
        self.moved(video, place)

    def changed(self, video: Video) -> None:
        """``video`` is news to this watcher (called synchronously by the publisher's delivery)."""
        raise NotImplementedError

    def moved(self, video: Video, place: int) -> None:
        """The waiting ``video`` is now at ``place`` in the queue; ignored unless a watcher cares."""


# The registry the fan-out offers changes through: watchers by video uuid.
Watchers = dict[str, set[Watcher]]
