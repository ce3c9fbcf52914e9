"""`WatchHub`: change notices for ``GET /api/v1/watch`` (Server-Sent Events).

Rules of this module:

* One ``commit`` event per served commit: its ``id`` is the commit sha, its data
  ``{"commit", "prompts": [{"id", "org", "app", "name", "environment", "etag"}]}`` lists
  the prompts whose answer changed (``etag`` null: no longer served), only those within
  the key's scope. A commit with no change in scope still gets its (empty) event, so a
  client's ``Last-Event-ID`` stays current.
* A stream opens with a ``hello`` event naming the commit served (its ``id`` too). A client
  that reconnects with ``Last-Event-ID`` gets the commits it missed from a ring of the last
  `ring_size`; one whose id is not in the ring (too old, or another replica's history) gets
  a ``reset`` event: revalidate everything.
* A stream lasts only as long as its key: the key is checked again before each event and
  every `heartbeat` seconds, and a revoked (or re-scoped) key's stream ends.
* Heartbeats are SSE comments every `heartbeat` seconds (sse-starlette's ping), so proxies
  keep the stream and clients can tell a dead one.
* Bounds: at most `max_per_key` open streams per API key and `max_total` in all (a 429
  with Retry-After beyond); each stream buffers at most `QUEUE_SIZE` events, and one that
  falls further behind gets a ``reset`` instead of the backlog.
* Changes are computed on the thread that swapped the commit in (the fetch or poll
  thread), by comparing the ETags of the served prompts of the two snapshots; events reach
  the streams on the event loop (`loop.call_soon_threadsafe`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from .store import Snapshot

__all__ = ["QUEUE_SIZE", "Change", "CommitEvent", "TooManyWatchers", "WatchHub"]

logger = logging.getLogger("promptory.server")

#: Events one stream may have waiting before it is told to reset instead.
QUEUE_SIZE = 64

_Answers = dict[str, tuple[str, str, str, str, str]]  # id -> org, app, name, environment, etag


@dataclass(frozen=True)
class Change:
    """A prompt whose answer changed in a commit."""

    id: str
    org: str
    app: str
    name: str
    environment: str
    etag: str | None

    def as_json(self) -> dict[str, Any]:
        """The change as the event lists it."""
        return {
            "id": self.id,
            "org": self.org,
            "app": self.app,
            "name": self.name,
            "environment": self.environment,
            "etag": self.etag,
        }


@dataclass(frozen=True)
class CommitEvent:
    """A commit swapped in, and what changed."""

    commit: str
    changes: tuple[Change, ...]


class TooManyWatchers(Exception):
    """A stream would pass a bound; `message` says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_RESET: Any = object()
_CLOSE: Any = object()


class _Subscriber:
    __slots__ = ("key", "queue")

    def __init__(self, key: str) -> None:
        self.key = key
        self.queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)


def _answers(snapshot: Snapshot) -> _Answers:
    return {
        record.id: (record.org, record.app, record.name, record.environment, served.etag)
        for record in snapshot.prompts()
        if (served := record.ready) is not None
    }


def diff(before: _Answers, after: _Answers) -> tuple[Change, ...]:
    """The prompts whose answer differs between two answer maps, sorted by id."""
    changes = []
    for prompt_id in sorted(before.keys() | after.keys()):
        old, new = before.get(prompt_id), after.get(prompt_id)
        if old == new:
            continue
        where = new or old
        assert where is not None
        changes.append(Change(prompt_id, *where[:4], etag=new[4] if new else None))
    return tuple(changes)


class WatchHub:
    """Remembers recent commits and fans their events out to the open streams.

    Args:
        ring_size: commits remembered for ``Last-Event-ID``.
        max_per_key: open streams allowed per API key.
        max_total: open streams allowed in all.
        heartbeat: seconds between heartbeat comments.
        on_count: called with the number of open streams when it changes (a gauge).
    """

    def __init__(
        self,
        *,
        ring_size: int = 256,
        max_per_key: int = 64,
        max_total: int = 1000,
        heartbeat: float = 15.0,
        on_count: Callable[[int], None] | None = None,
    ) -> None:
        self.ring: deque[CommitEvent] = deque(maxlen=ring_size)
        self.max_per_key = max_per_key
        self.max_total = max_total
        self.heartbeat = heartbeat
        self._on_count = on_count
        self._subscribers: set[_Subscriber] = set()
        self._per_key: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._answers: tuple[str | None, _Answers] = (None, {})
        self.current: str | None = None

    # --- the store's side (any thread) -------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, snapshot: Snapshot) -> None:
        """Deliver on `loop`; `snapshot` is what is served now."""
        self._loop = loop
        self.current = snapshot.commit
        if snapshot.commit is not None and not self.ring:
            # An anchor: a client that saw this commit in its hello can resume after it.
            self.ring.append(CommitEvent(snapshot.commit, ()))

    def served(self, before: Snapshot, after: Snapshot) -> None:
        """A new snapshot was swapped in: work out what changed and tell every stream."""
        if after.commit is None:
            return
        known_commit, known = self._answers
        old = known if known_commit == before.commit else _answers(before)
        new = _answers(after)
        self._answers = (after.commit, new)
        event = CommitEvent(after.commit, diff(old, new))
        loop = self._loop
        if loop is None or loop.is_closed():
            self.ring.append(event)
            self.current = event.commit
            return
        try:
            loop.call_soon_threadsafe(self._deliver, event)
        except RuntimeError:  # the loop closed meanwhile: nobody is listening
            pass

    def _deliver(self, event: CommitEvent) -> None:
        self.ring.append(event)
        self.current = event.commit
        for subscriber in self._subscribers:
            self._put(subscriber, event)

    @staticmethod
    def _put(subscriber: _Subscriber, item: Any) -> None:
        queue = subscriber.queue
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            # Too far behind to catch up event by event: drop the backlog, ask for a reset.
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(_RESET)

    def close(self) -> None:
        """End every open stream (call on the event loop)."""
        for subscriber in list(self._subscribers):
            self._put(subscriber, _CLOSE)

    def close_threadsafe(self) -> None:
        """`close`, from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self.close)
        except RuntimeError:  # the loop closed meanwhile
            pass

    # --- the streams' side (the event loop) --------------------------------------------------

    @property
    def subscribers(self) -> int:
        """Open streams."""
        return len(self._subscribers)

    def subscribe(self, key: str) -> _Subscriber:
        """Open a stream for API key id `key`.

        Raises:
            TooManyWatchers: a bound would be passed.
        """
        if len(self._subscribers) >= self.max_total:
            raise TooManyWatchers(
                f"the server has {self.max_total} watch streams open, its limit; retry later"
            )
        if self._per_key.get(key, 0) >= self.max_per_key:
            raise TooManyWatchers(
                f"this API key has {self.max_per_key} watch streams open, the limit per key; "
                "share one client per process"
            )
        subscriber = _Subscriber(key)
        self._subscribers.add(subscriber)
        self._per_key[key] = self._per_key.get(key, 0) + 1
        self._counted()
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        """Close a stream's subscription."""
        if subscriber not in self._subscribers:
            return
        self._subscribers.discard(subscriber)
        left = self._per_key[subscriber.key] - 1
        if left:
            self._per_key[subscriber.key] = left
        else:
            del self._per_key[subscriber.key]
        self._counted()

    def _counted(self) -> None:
        if self._on_count is not None:
            self._on_count(len(self._subscribers))

    async def events(
        self,
        subscriber: _Subscriber,
        last_event_id: str | None,
        allow: Callable[[str, str], bool] | None,
        still_valid: Callable[[], bool] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """The stream's events, as sse-starlette takes them, until it is closed.

        `still_valid` is asked before each event and every `heartbeat` seconds while idle:
        once it answers False (the key was revoked or its scope changed), the stream ends.
        """
        try:
            sent: set[str] = set()
            if last_event_id and last_event_id != self.current:
                missed = self._since(last_event_id)
                if missed is None:
                    yield self._reset()
                else:
                    for event in missed:
                        sent.add(event.commit)
                        yield self._render(event, allow)
            elif not last_event_id:
                yield {
                    "event": "hello",
                    "id": self.current or "",
                    "data": json.dumps({"commit": self.current}),
                }
            while True:
                try:
                    item = await asyncio.wait_for(subscriber.queue.get(), self.heartbeat)
                except asyncio.TimeoutError:
                    if still_valid is not None and not still_valid():
                        return
                    continue
                if item is _CLOSE:
                    return
                if still_valid is not None and not still_valid():
                    return  # a revoked key learns nothing more
                if item is _RESET:
                    yield self._reset()
                    continue
                if item.commit in sent:
                    continue  # already sent while catching up
                yield self._render(item, allow)
        finally:
            self.unsubscribe(subscriber)

    def _since(self, commit: str) -> list[CommitEvent] | None:
        """The events after `commit`, or None when the ring does not reach back to it."""
        events = list(self.ring)
        for index, event in enumerate(events):
            if event.commit == commit:
                return events[index + 1 :]
        return None

    def _reset(self) -> dict[str, Any]:
        return {
            "event": "reset",
            "id": self.current or "",
            "data": json.dumps({"commit": self.current}),
        }

    @staticmethod
    def _render(event: CommitEvent, allow: Callable[[str, str], bool] | None) -> dict[str, Any]:
        prompts = [
            change.as_json()
            for change in event.changes
            if allow is None or allow(change.org, change.app)
        ]
        return {
            "event": "commit",
            "id": event.commit,
            "data": json.dumps({"commit": event.commit, "prompts": prompts}),
        }
