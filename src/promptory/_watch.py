"""`Watcher`: the SDK's change stream (``watch=True``), one per client.

Rules of this module:

* One daemon thread per client reads ``GET /api/v1/watch`` (Server-Sent Events, parsed by
  `_sse.EventParser`). A ``commit`` event marks the cached entries of the prompts it names
  stale and hands each to the client's own background revalidation (conditional GETs, one
  per key, in the bounded pool or task set the client already has); a ``reset`` marks every
  entry. Callers keep getting answers from memory throughout.
* An event names each prompt's new ETag. Behind a load balancer the revalidation may reach
  a replica that has not fetched the commit yet and answers the old ETag; such an entry is
  checked again every `RECHECK_INTERVAL` seconds, for at most `RECHECK_FOR` seconds, by a
  second short-lived thread, until the cache holds the announced ETag.
* Reconnects with exponential backoff and jitter (`BACKOFF_START` doubling to
  `BACKOFF_MAX`), sending ``Last-Event-ID`` so the server replays what was missed.
* A server without the route (404, 405, or not an event stream: the existing Promptory
  server) ends the watch quietly (a debug log): the TTL keeps working as before. A 401 or
  403 ends it with one warning.
* `close()` ends the stream at once (the socket is shut down under the blocked read).
* After ``os.fork()`` the child starts its own stream: the parent's thread and connection
  are not in the child.
* Nothing here decides what a cached answer is: entries are only marked and handed over.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import ssl
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from ._cache import CacheEntry, CacheKey
from ._sse import Event, EventParser, LineTooLong, split_lines

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_START",
    "READ_TIMEOUT",
    "RECHECK_FOR",
    "RECHECK_INTERVAL",
    "WATCH_PATH",
    "Watcher",
    "watch_async",
    "watch_sync",
]

logger = logging.getLogger("promptory")

WATCH_PATH = "/api/v1/watch"
#: First wait before a reconnect, in seconds; doubled after each failure...
BACKOFF_START = 0.5
#: ...up to this.
BACKOFF_MAX = 30.0
#: Seconds without a byte (the server sends a heartbeat every 15 s) before reconnecting.
READ_TIMEOUT = 45.0
#: Seconds between checks that a changed entry holds the announced ETag...
RECHECK_INTERVAL = 0.2
#: ...for at most this long after the event.
RECHECK_FOR = 10.0

Revalidate = Callable[[CacheKey, CacheEntry], None]


def _bare_etag(etag: str | None) -> str | None:
    return etag[2:] if etag is not None and etag.startswith("W/") else etag


class Watcher:
    """Reads a client's change stream and marks its cache.

    Args:
        core: the client's `_core.ClientCore` (its cache and clock).
        base_url: the server's URL.
        headers: the client's headers (its key among them).
        revalidate: starts the client's background revalidation of a (key, entry).
        verify, proxy: as the client takes them.
        name: the thread's name.
    """

    def __init__(
        self,
        *,
        core: Any,
        base_url: str,
        headers: dict[str, str],
        revalidate: Revalidate,
        verify: ssl.SSLContext | str | bool = True,
        proxy: str | None = None,
        name: str = "promptory-watch",
    ) -> None:
        self._core = core
        self._base_url = base_url
        self._headers = {**headers, "Accept": "text/event-stream", "Cache-Control": "no-store"}
        self._revalidate = revalidate
        self._verify = verify
        self._proxy = proxy
        self._name = name
        self.last_event_id = ""
        self.connected = threading.Event()
        """Set while a stream is open (tests and diagnostics)."""
        self.gone = False
        """True once the watch ended for good (no route, or the key was refused)."""
        self._reset_state()
        _LIVE_WATCHERS.add(self)

    def _reset_state(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._checker: threading.Thread | None = None
        self._pending: dict[CacheKey, tuple[str | None, float]] = {}
        self._socket: socket.socket | None = None
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Watcher:
        """Start the stream's thread (once)."""
        with self._lock:
            if self._thread is not None or self._closed:
                return self
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        return self

    def close(self, wait: float = 2.0) -> None:
        """End the stream; wait at most `wait` seconds for the thread (0: do not wait)."""
        with self._lock:
            self._closed = True
            thread, sock = self._thread, self._socket
        self._stop.set()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read at once
            except OSError:
                pass
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(wait)

    @property
    def running(self) -> bool:
        """Whether the stream's thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _after_fork_in_child(self) -> None:
        closed = self._closed
        was_started = self._thread is not None and not closed
        self._reset_state()
        self._closed = closed
        self.connected = threading.Event()
        if was_started and not self.gone:
            self.start()

    # --- the stream ----------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_START
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        with httpx.Client(
            base_url=self._base_url,
            timeout=timeout,
            verify=self._verify,
            proxy=self._proxy,
            follow_redirects=False,
        ) as http:
            while not self._stop.is_set():
                try:
                    delivered = self._stream(http)
                except (httpx.HTTPError, OSError) as exc:
                    delivered = False
                    if not self._stop.is_set():
                        logger.debug("watch stream broke (%s): reconnecting", type(exc).__name__)
                finally:
                    self.connected.clear()
                    self._socket = None
                if delivered is None:  # ended for good
                    self.gone = True
                    return
                if delivered:
                    backoff = BACKOFF_START
                wait = backoff * (0.5 + random.random() / 2)
                backoff = min(backoff * 2, BACKOFF_MAX)
                self._stop.wait(wait)

    def _stream(self, http: httpx.Client) -> bool | None:
        """One connection: True when events came, False to retry, None to stop."""
        headers = dict(self._headers)
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        with http.stream("GET", WATCH_PATH, headers=headers) as response:
            status = response.status_code
            content_type = response.headers.get("content-type", "")
            if status in (404, 405, 501) or (
                status == 200 and not content_type.startswith("text/event-stream")
            ):
                logger.debug("the server has no watch stream: relying on the cache TTL")
                return None
            if status in (401, 403):
                logger.warning("watch stream refused (HTTP %d): relying on the cache TTL", status)
                return None
            if status != 200:
                logger.debug("watch stream answered HTTP %d: retrying", status)
                return False
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            with self._lock:
                if self._closed:
                    return None
                self._socket = sock if isinstance(sock, socket.socket) else None
            self.connected.set()
            parser = EventParser()
            parser.last_event_id = self.last_event_id
            delivered = False
            try:
                lines = split_lines(response.iter_text(), parser.max_data + 16)
                for line in lines:
                    event = parser.feed(line)
                    if event is None:
                        continue
                    delivered = True
                    self.last_event_id = parser.last_event_id
                    self._on_event(event)
            except LineTooLong:
                logger.debug("watch stream sent an over-long line: reconnecting")
                return False
            return delivered

    def _on_event(self, event: Event) -> None:
        if event.event == "commit":
            try:
                prompts = json.loads(event.data).get("prompts", [])
            except (ValueError, AttributeError, RecursionError):
                logger.debug("watch event with unreadable data ignored")
                return
            if isinstance(prompts, list):
                self._mark([p for p in prompts if isinstance(p, dict)])
        elif event.event == "reset":
            self._mark_all()

    # --- marking the cache ---------------------------------------------------------------------

    def _mark(self, changes: Iterable[dict[str, Any]]) -> None:
        by_id: dict[str, dict[str, Any]] = {}
        by_name: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = {}
        for change in changes:
            by_id[str(change.get("id"))] = change
            place = (change.get("org"), change.get("app"), change.get("name"))
            by_name.setdefault(place, []).append(change)
        if not by_id:
            return
        marked = []
        for key, entry in self._core.cache.entries():
            if key[-1] is not None:
                continue  # pinned to a ref: not the followed commit
            expected: str | None = None
            exact = False
            if key[0] == "id":
                by_this_id = by_id.get(entry.prompt.id) or by_id.get(key[1])
                if by_this_id is None:
                    continue
                expected, exact = by_this_id.get("etag"), True
            else:
                found = by_name.get((key[1], key[2], key[3]))
                if not found:
                    continue
                environment = key[4]
                for change in found:
                    if environment == change.get("environment"):
                        expected, exact = change.get("etag"), True
            marked.append((key, entry, expected, exact))
        self._stale(marked)

    def _mark_all(self) -> None:
        self._stale(
            [
                (key, entry, None, False)
                for key, entry in self._core.cache.entries()
                if key[-1] is None
            ]
        )

    def _stale(self, marked: list[tuple[CacheKey, CacheEntry, str | None, bool]]) -> None:
        now = self._core.clock()
        for key, entry, expected, exact in marked:
            if entry.fresh_until > now:
                entry.fresh_until = now  # stale from now on: never past max_stale
            entry.retry_at = 0.0
            self._revalidate(key, entry)
            if exact:
                with self._lock:
                    self._pending[key] = (_bare_etag(expected), now + RECHECK_FOR)
        if any(exact for *_, exact in marked):
            self._start_checker()

    def _start_checker(self) -> None:
        with self._lock:
            if self._checker is not None and self._checker.is_alive():
                return
            self._checker = threading.Thread(
                target=self._check, name=f"{self._name}-check", daemon=True
            )
            self._checker.start()

    def _check(self) -> None:
        """Until every changed entry holds its announced ETag (or gives up), revalidate the
        ones that don't: a replica behind the one that sent the event answered them."""
        cache = self._core.cache
        while not self._stop.wait(RECHECK_INTERVAL):
            now = self._core.clock()
            with self._lock:
                pending = list(self._pending.items())
            if not pending:
                return
            for key, (expected, deadline) in pending:
                entry = cache.peek(key)
                done = (
                    (entry is None)
                    if expected is None
                    else (entry is not None and _bare_etag(entry.etag) == expected)
                )
                if done or now > deadline:
                    with self._lock:
                        if self._pending.get(key, (None, 0.0))[1] == deadline:
                            del self._pending[key]
                    continue
                if entry is not None and key not in self._core.flights:
                    entry.fresh_until = min(entry.fresh_until, now)
                    self._revalidate(key, entry)


_LIVE_WATCHERS: weakref.WeakSet[Watcher] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for watcher in list(_LIVE_WATCHERS):
        watcher._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def watch_sync(client: Any, verify: ssl.SSLContext | str | bool, proxy: str | None) -> Watcher:
    """The watcher of a `PromptClient`, started."""
    return Watcher(
        core=client._core,
        base_url=client._core.options.base_url,
        headers=client._headers(),
        revalidate=client._revalidate_in_background,
        verify=verify,
        proxy=proxy,
        name=f"promptory-watch-{id(client):x}",
    ).start()


def watch_async(client: Any, verify: ssl.SSLContext | str | bool, proxy: str | None) -> Watcher:
    """The watcher of an `AsyncPromptClient`, started. Revalidations are handed to the
    event loop running when the client was made; made outside one, changed entries are only
    marked stale, and the next call revalidates them."""
    import asyncio

    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None

    def revalidate(key: CacheKey, entry: CacheEntry) -> None:
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(client._revalidate_in_background, key, entry)
        except RuntimeError:  # the loop closed meanwhile
            pass

    return Watcher(
        core=client._core,
        base_url=client._core.options.base_url,
        headers=client._headers(),
        revalidate=revalidate,
        verify=verify,
        proxy=proxy,
        name=f"promptory-watch-{id(client):x}",
    ).start()
