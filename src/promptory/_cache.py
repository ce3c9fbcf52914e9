"""`PromptCache`: the in-memory LRU of prompts, with TTL, ETags and per-key cooldowns.

Rules of this module:
- No I/O and no clock of its own: every method that needs the time takes `now`, a reading
  of a monotonic clock, so tests drive it with a fake one.
- Reads take no lock. A hit is a dict lookup and an `OrderedDict.move_to_end`, each atomic
  under the GIL, so 32 threads hitting the cache never queue behind each other. Writes
  (insert, replace, evict, invalidate) hold one lock among themselves.
- Entries are immutable but for their cooldown fields: a 200 or a 304 replaces the entry, so
  a reader holding an entry always sees one consistent (prompt, etag, age).
- An invalidation wins over every answer to a request sent before it. `generation` counts
  the invalidations (`invalidate`, `clear`); a fetch notes it when its request leaves, and
  `put` stores nothing when it has moved since: that answer may predate what the caller
  asked to forget.

Keys are tuples, cheap to hash on the hot path:
``("id", prompt_id, ref)`` and ``("name", org, app, name, environment, ref)``; `describe_key`
is the one way messages and logs name them (``prompt id '<id>'``, ``prompt <org>/<app>/<name>``).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from .prompt import Prompt

__all__ = ["CacheEntry", "CacheKey", "PromptCache", "describe_key"]

CacheKey = tuple[Any, ...]


def describe_key(key: CacheKey) -> str:
    """How messages and logs name the prompt of `key`."""
    if key[0] == "id":
        text = f"prompt id {key[1]!r}"
    else:
        _, org, app, name, environment = key[:5]
        text = f"prompt {org}/{app}/{name}"
        if environment is not None:
            text += f" (environment {environment})"
    ref = key[-1]
    return f"{text} at ref {ref}" if ref is not None else text


class CacheEntry:
    """One cached prompt.

    Attributes:
        prompt: the prompt as last answered by the server.
        etag: the server's ETag for it, sent back as If-None-Match; None if it sent none.
        stored_at: monotonic time of the answer (a 200 or a 304) that made this entry.
        fresh_until: monotonic time at which it turns stale (infinity for pinned refs).
        failures: background revalidations that failed in a row (cooldown).
        retry_at: monotonic time before which no new background revalidation starts.
    """

    __slots__ = ("etag", "failures", "fresh_until", "prompt", "retry_at", "stored_at")

    def __init__(self, prompt: Prompt, etag: str | None, stored_at: float, fresh_until: float):
        self.prompt = prompt
        self.etag = etag
        self.stored_at = stored_at
        self.fresh_until = fresh_until
        self.failures = 0
        self.retry_at = 0.0


class PromptCache:
    """An LRU of `CacheEntry` by key, bounded by `max_size`, with a TTL of `ttl` seconds."""

    def __init__(self, *, ttl: float, max_size: int) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._data: OrderedDict[Hashable, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0
        #: Bumped by every invalidation; see the module's rules.
        self.generation = 0
        # The entry last marked most recently used: a hit on it needs no reordering. Only a
        # hint: a stale value costs one unneeded `move_to_end`, never a wrong answer.
        self.last: CacheEntry | None = None

    def reset_lock(self) -> None:
        """Replace the write lock (after `fork()`, a lock held by a vanished thread would
        never be released in the child)."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def hot_path(
        self,
    ) -> tuple[Callable[[Hashable], CacheEntry | None], Callable[[Hashable], None]]:
        """`(get, move_to_end)` of the underlying dict, for the lock-free hit path
        (`ClientCore.lookup_*`): a hit costs two C calls and no Python frame. After a
        `move_to_end`, set `last` to the entry."""
        return self._data.get, self._data.move_to_end

    def peek(self, key: Hashable) -> CacheEntry | None:
        """The entry for `key`, without touching its recency."""
        return self._data.get(key)

    def put(
        self,
        key: Hashable,
        prompt: Prompt,
        etag: str | None,
        now: float,
        *,
        generation: int,
        pinned: bool = False,
    ) -> CacheEntry | None:
        """Store a prompt from a 200 answer, replacing any entry for `key`.

        `generation` is the cache's `generation` when the request left.
        Returns the new entry, or None when nothing was stored: the cache holds nothing
        (`max_size` 0), or an invalidation came after the request left.
        """
        if self.max_size <= 0:
            return None
        entry = CacheEntry(prompt, etag, now, math.inf if pinned else now + self.ttl)
        with self._lock:
            if generation != self.generation:
                return None
            self._data[key] = entry
            self._data.move_to_end(key)
            self.last = entry
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)
                self.evictions += 1
        return entry

    def refresh(
        self, key: Hashable, seen: CacheEntry, etag: str | None, now: float
    ) -> CacheEntry | None:
        """Apply a 304 Not Modified to the entry `seen` when the request was made.

        The data is kept and its age restarts; the 304's ETag is adopted when it has one.
        Returns the new entry, or None when `seen` is no longer the cached entry for `key`
        (evicted or invalidated meanwhile): the caller must then fetch unconditionally,
        since an invalidation asked for fresh data.
        """
        with self._lock:
            if self._data.get(key) is not seen:
                return None
            fresh_until = math.inf if seen.fresh_until == math.inf else now + self.ttl
            entry = CacheEntry(seen.prompt, etag or seen.etag, now, fresh_until)
            self._data[key] = entry
            self._data.move_to_end(key)
            self.last = entry
        return entry

    def evict(self, key: Hashable) -> bool:
        """Remove the entry for `key`; True if there was one."""
        with self._lock:
            return self._data.pop(key, None) is not None

    def invalidate(self, name: str) -> int:
        """Remove the entries of prompts matching `name`; return how many.

        An entry matches when its prompt's name equals `name`, its id starts with `name`
        (in any case: UUIDs are case-insensitive), or
        its qualified name ``org/app/name`` starts with `name` segment by segment (``myorg``
        and ``myorg/myapp`` match, ``myorg/my`` does not).
        """
        wanted = name.split("/")
        with self._lock:
            self.generation += 1
            doomed = [
                key for key, entry in self._data.items() if _matches(entry.prompt, name, wanted)
            ]
            for key in doomed:
                del self._data[key]
        return len(doomed)

    def clear(self) -> int:
        """Remove every entry; return how many there were."""
        with self._lock:
            self.generation += 1
            count = len(self._data)
            self._data.clear()
        return count

    def entries(self) -> list[tuple[Hashable, CacheEntry]]:
        """A snapshot of the (key, entry) pairs, least recently used first."""
        with self._lock:
            return list(self._data.items())

    def stats(self, now: float) -> dict[str, Any]:
        """The cache statistics at time `now`, keyed as README "Caching" lists them."""
        entries = [entry for _, entry in self.entries()]
        fresh = sum(1 for entry in entries if now < entry.fresh_until)
        oldest = max((now - entry.stored_at for entry in entries), default=0.0)
        return {
            "total_entries": len(entries),
            "fresh_entries": fresh,
            "stale_entries": len(entries) - fresh,
            "max_size": self.max_size,
            "ttl": self.ttl,
            "oldest_age_seconds": round(oldest, 3),
        }


def _matches(prompt: Prompt, name: str, wanted: list[str]) -> bool:
    # Ids are UUIDs, whose hex digits mean the same in either case (RFC 9562 §4).
    if prompt.name == name or prompt.id.lower().startswith(name.lower()):
        return True
    qualified = [prompt.org, prompt.app, prompt.name]
    return len(wanted) <= 3 and qualified[: len(wanted)] == wanted
