"""Model-based fuzzing of the cache: random sequences of operations on `ClientCore` (and its
`PromptCache`) on a fake clock, checked step by step against a reference model.

The model is the plainest thing that can be right: an ordered dict (least recently used
first) of ``key -> (prompt, etag, stored_at, pinned, generation)``, with the README's cache rules
written out directly:

- a lookup is fresh while ``now < stored_at + ttl`` (pinned refs: always), else stale (or a
  miss to revalidate in the caller when ``ttl == 0``); a lookup of a cached key marks it
  most recently used;
- a 200 replaces the entry, marks it most recently used and evicts least recently used
  entries beyond ``max_size`` (rule 6, 11); ``max_size == 0`` caches nothing (rule 10);
- a 304 restarts the age of the entry the request was made for and adopts the 304's ETag if
  it has one; if that entry was replaced, evicted or invalidated meanwhile, the 304 is
  answered by an unconditional fetch (rule 5);
- 401, 403 and 404 evict (rule 8);
- an invalidation wins over every answer to a request sent before it: a 200 to a request
  that left before any ``cache_invalidate``/``cache_invalidate_all`` is handed to its caller
  but not stored (issue 9, item 11);
- ``cache_invalidate(pattern)`` removes entries whose prompt name equals the pattern, whose
  id starts with it, or whose ``org/app/name`` starts with it segment by segment; the
  count is returned, as by ``cache_invalidate_all()``.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from promptory import AuthenticationError, ForbiddenError, NotFoundError, Prompt
from promptory._core import ClientCore, Miss, Stale
from promptory._fetch import Done, Fail, PromptFetch, Retry
from promptory._options import ClientOptions

from .test_core_rules import KEY, FakeClock, answer

# -- the catalogue of prompts on the (imaginary) server ---------------------------------------


@dataclass(frozen=True)
class Catalogued:
    org: str
    app: str
    name: str
    environment: str

    @property
    def id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(self.fields)))

    @property
    def fields(self) -> tuple[str, str, str, str]:
        return (self.org, self.app, self.name, self.environment)

    def json(self, version: int) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "name": self.name,
                "org": self.org,
                "app": self.app,
                "environment": self.environment,
                "version": f"1.{version}.0",
                "body": f"{self.name} v{version}",
            }
        ).encode()


# "myorg/my" and "myorg2" share text but not segments with "myorg"/"myapp": the invalidation
# patterns below probe exactly that.
CATALOGUE = [
    Catalogued(org, app, name, environment)
    for org, app in (("myorg", "myapp"), ("myorg", "myapp2"), ("myorg2", "myapp"))
    for name in ("greeting", "greet")
    for environment in ("production", "development")
]


def key_of(item: Catalogued, how: str) -> tuple[Any, ...]:
    """The cache key of `item` fetched `how`: by id, by id at a ref, or by name."""
    if how == "id":
        return ("id", item.id, None)
    if how == "id@ref":
        return ("id", item.id, "v1")
    if how == "name-any":
        return ("name", item.org, item.app, item.name, None, None)
    return ("name", item.org, item.app, item.name, item.environment, None)


PATTERNS = st.one_of(
    st.sampled_from(["greeting", "greet", "gree", "production", "myapp"]),
    st.sampled_from(["myorg", "myorg2", "myorg/myapp", "myorg/myapp2", "myorg2/myapp"]),
    st.sampled_from(["myorg/my", "my", "myorg/myapp/gre", "myorg/myapp/greet"]),
    st.sampled_from(["myorg/myapp/greeting", "myorg/myapp/greeting/x", "myorg/", "/"]),
    st.tuples(st.sampled_from(CATALOGUE), st.integers(1, 36)).map(lambda t: t[0].id[: t[1]]),
    # The same id prefixes in upper case: UUIDs are case-insensitive.
    st.tuples(st.sampled_from(CATALOGUE), st.integers(1, 36)).map(
        lambda t: t[0].id[: t[1]].upper()
    ),
    st.text(alphabet="myorgapetin/-0123456789abcdef", min_size=1, max_size=12),
)

HOWS = ("id", "id@ref", "name-any", "name-env")
PICK = st.integers(0, 7)  # an index into the run's keys
ELAPSED = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 2.5]),  # exactly a TTL: the entry turns stale then
    st.floats(min_value=0, max_value=3, allow_nan=False, allow_infinity=False),
)

SPELLINGS = ("name", "id", "id-prefix", "org", "org/app", "org/app/name", "org/partial-app")


def spell(item: Catalogued, spelling: str) -> str:
    """An invalidation pattern for `item`: what a user would type to clear it, or nearly."""
    return {
        "name": item.name,
        "id": item.id,
        "id-prefix": item.id[:8],
        "org": item.org,
        "org/app": f"{item.org}/{item.app}",
        "org/app/name": f"{item.org}/{item.app}/{item.name}",
        "org/partial-app": f"{item.org}/{item.app[:2]}",  # not a whole segment: no match
    }[spelling]


# -- the reference model ----------------------------------------------------------------------


@dataclass
class ModelEntry:
    prompt: Prompt
    etag: str | None
    stored_at: float
    pinned: bool
    generation: int


class Model:
    """An exact LRU with TTL: the cache rules of README "Caching", written out plainly."""

    def __init__(self, ttl: float, max_size: int) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self.entries: OrderedDict[tuple[Any, ...], ModelEntry] = OrderedDict()
        self.generations = 0
        self.invalidations = 0
        self.evictions = 0
        self.hits = self.stale_hits = self.misses = 0

    def fresh(self, entry: ModelEntry, now: float) -> bool:
        return entry.pinned or now < entry.stored_at + self.ttl

    def lookup(self, key: tuple[Any, ...], now: float) -> str:
        """ "fresh", "stale", "expired" (a miss knowing the entry) or "miss"."""
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
            return "miss"
        self.entries.move_to_end(key)
        if self.fresh(entry, now):
            self.hits += 1
            return "fresh"
        if self.ttl == 0:
            self.misses += 1
            return "expired"
        self.stale_hits += 1
        return "stale"

    def store(
        self, key: tuple[Any, ...], prompt: Prompt, etag: str | None, now: float, sent: int
    ) -> None:
        """A 200 to a request that left when `sent` invalidations had happened."""
        if self.max_size == 0 or sent != self.invalidations:
            return
        self.generations += 1
        self.entries[key] = ModelEntry(prompt, etag, now, key[-1] is not None, self.generations)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_size:
            self.entries.popitem(last=False)
            self.evictions += 1

    def not_modified(
        self, key: tuple[Any, ...], generation: int, etag: str | None, now: float
    ) -> bool:
        entry = self.entries.get(key)
        if entry is None or entry.generation != generation:
            return False
        self.generations += 1
        self.entries[key] = ModelEntry(
            entry.prompt, etag or entry.etag, now, entry.pinned, self.generations
        )
        self.entries.move_to_end(key)
        return True

    def evict(self, key: tuple[Any, ...]) -> None:
        self.entries.pop(key, None)

    def invalidate(self, pattern: str) -> int:
        self.invalidations += 1
        segments = pattern.split("/")
        doomed = [
            key
            for key, entry in self.entries.items()
            if entry.prompt.name == pattern
            or entry.prompt.id.lower().startswith(pattern.lower())
            or [entry.prompt.org, entry.prompt.app, entry.prompt.name][: len(segments)] == segments
        ]
        for key in doomed:
            del self.entries[key]
        return len(doomed)

    def clear(self) -> int:
        self.invalidations += 1
        count = len(self.entries)
        self.entries.clear()
        return count


# -- the machine ------------------------------------------------------------------------------


@dataclass
class Pending:
    """A request sent for `key`: conditional when its entry was `generation` (None: nothing
    was cached), after `invalidations` invalidations."""

    key: tuple[Any, ...]
    item: Catalogued
    generation: int | None
    invalidations: int
    fetch: PromptFetch


class CacheMachine(RuleBasedStateMachine):
    """Drives `ClientCore` the way the clients do, beside the model."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.core: ClientCore
        self.model: Model
        self.universe: list[tuple[tuple[Any, ...], Catalogued]] = []
        self.pending: list[Pending] = []
        self.etags = 0

    @initialize(
        ttl=st.sampled_from([1.0, 2.5, 0.0]),
        max_size=st.integers(0, 5),
        fetched=st.lists(
            st.tuples(st.sampled_from(CATALOGUE), st.sampled_from(HOWS)),
            min_size=1,
            max_size=8,
            unique=True,
        ),
    )
    def build(self, ttl: float, max_size: int, fetched: list[tuple[Catalogued, str]]) -> None:
        """A core, and the few keys this run fetches (few, so that they meet often)."""
        self.universe = [(key_of(item, how), item) for item, how in fetched]
        options = ClientOptions.build(
            base_url="http://127.0.0.1:9",
            api_key=KEY,
            cache_ttl=ttl,
            cache_max_size=max_size,
            timeout=1.0,
            retry_count=0,
        )
        self.core = ClientCore(options, clock=self.clock, rng=lambda: 1.0)
        self.model = Model(ttl, max_size)

    def new_etag(self) -> str:
        self.etags += 1
        return f'"e{self.etags}"'

    def answer_200(
        self,
        fetch: PromptFetch,
        key: tuple[Any, ...],
        item: Catalogued,
        sent: int | None = None,
    ) -> None:
        """`fetch` gets a 200; its request left after `sent` invalidations (None: now)."""
        etag = self.new_etag()
        headers = {"ETag": etag}
        if key[-1] is not None:  # a tag or commit: the server marks the answer immutable
            headers["Cache-Control"] = "private, max-age=31536000, immutable"
        step = answer(fetch, 200, httpx.Headers(headers), item.json(self.etags))
        assert isinstance(step, Done), step
        assert isinstance(step.value, Prompt)
        self.model.store(
            key, step.value, etag, self.clock(), self.model.invalidations if sent is None else sent
        )

    # -- rules --

    def pick(self, index: int) -> tuple[tuple[Any, ...], Catalogued]:
        return self.universe[index % len(self.universe)]

    @rule(index=PICK)
    def fetch(self, index: int) -> None:
        """A fetch answered 200: stored, or replacing the entry (rule 6)."""
        key, item = self.pick(index)
        self.answer_200(self.core.prompt_fetch(key, self.core.cache.peek(key)), key, item)

    @rule(index=PICK, later=ELAPSED)
    def get(self, index: int, later: float) -> None:
        """`get`, `later` seconds on: a lookup; a miss is fetched in the caller (200), an
        expired entry under ``ttl == 0`` is revalidated in the caller (304); a stale one is
        served as it is."""
        self.clock.advance(later)
        key, item = self.pick(index)
        expected = self.model.lookup(key, self.clock())
        if key[0] == "id":
            state = self.core.lookup_id(key[1], key[2])
        else:
            _, org, app, name, environment, ref = key
            state = self.core.lookup_name(org, app, name, environment, ref)
        if expected == "fresh":
            assert state is self.model.entries[key].prompt
        elif expected == "stale":
            assert isinstance(state, Stale)
            assert state.entry.prompt is self.model.entries[key].prompt
            # Nothing in flight and no failure: a Stale asks for a revalidation.
        elif expected == "expired":
            assert isinstance(state, Miss)
            assert state.entry is not None
            entry = self.model.entries[key]
            assert state.entry.prompt is entry.prompt
            step = answer(self.core.prompt_fetch(key, state.entry), 304, httpx.Headers(), b"")
            assert isinstance(step, Done)
            assert step.value is entry.prompt
            assert self.model.not_modified(key, entry.generation, None, self.clock())
        else:
            assert isinstance(state, Miss)
            assert state.entry is None
            self.answer_200(self.core.prompt_fetch(key, None), key, item)

    @rule(index=PICK)
    def send(self, index: int) -> None:
        """A request leaves and waits for its answer: conditional on the cached entry's ETag
        (rule 4), unconditional when nothing is cached."""
        key, item = self.pick(index)
        seen = self.core.cache.peek(key)
        entry = self.model.entries.get(key)
        assert (seen is None) == (entry is None)
        fetch = self.core.prompt_fetch(key, seen)
        if entry is None:
            assert "If-None-Match" not in fetch.request.headers
        else:
            assert fetch.request.headers.get("If-None-Match") == entry.etag
        generation = None if entry is None else entry.generation
        self.pending.append(Pending(key, item, generation, self.model.invalidations, fetch))

    @precondition(lambda self: bool(self.pending))
    @rule(index=st.integers(0, 100))
    def answer_late_200(self, index: int) -> None:
        """The 200 to a request sent earlier arrives, maybe after an invalidation: then the
        caller gets it, the cache does not keep it (issue 9, item 11)."""
        pending = self.pending.pop(index % len(self.pending))
        self.answer_200(pending.fetch, pending.key, pending.item, pending.invalidations)

    @precondition(lambda self: bool(self.pending))
    @rule(index=st.integers(0, 100), with_etag=st.booleans())
    def answer_304(self, index: int, with_etag: bool) -> None:
        """The 304 arrives, maybe after the entry was replaced, evicted or invalidated."""
        pending = self.pending.pop(index % len(self.pending))
        etag = self.new_etag() if with_etag else None
        headers = httpx.Headers({"ETag": etag} if etag else {})
        step = answer(pending.fetch, 304, headers, b"")
        if pending.generation is not None and self.model.not_modified(
            pending.key, pending.generation, etag, self.clock()
        ):
            assert isinstance(step, Done), step
            assert step.value is self.model.entries[pending.key].prompt
        else:
            assert isinstance(step, Retry), step
            assert step.delay == 0.0
            assert "If-None-Match" not in step.request.headers
            self.answer_200(pending.fetch, pending.key, pending.item)

    @rule(index=PICK, status=st.sampled_from([401, 403, 404]))
    def refused(self, index: int, status: int) -> None:
        """401, 403 and 404 evict the entry (rule 8)."""
        key, _ = self.pick(index)
        fetch = self.core.prompt_fetch(key, self.core.cache.peek(key))
        step = answer(fetch, status, httpx.Headers(), b'{"error": {"code": "X", "message": "m"}}')
        assert isinstance(step, Fail)
        error = {401: AuthenticationError, 403: ForbiddenError, 404: NotFoundError}[status]
        assert type(step.error) is error
        self.model.evict(key)

    @rule(index=PICK, spelling=st.sampled_from(SPELLINGS), typed=st.none() | PATTERNS)
    def invalidate(self, index: int, spelling: str, typed: str | None) -> None:
        """`cache_invalidate` with a pattern spelled from a prompt of this run (so that it
        often matches), or with some other text."""
        pattern = typed if typed is not None else spell(self.pick(index)[1], spelling)
        assert self.core.invalidate(pattern) == self.model.invalidate(pattern)

    @rule()
    def invalidate_all(self) -> None:
        assert self.core.cache.clear() == self.model.clear()

    @rule(seconds=ELAPSED)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # -- invariants --

    @invariant()
    def never_above_max_size(self) -> None:
        if hasattr(self, "core"):
            assert len(self.core.cache) <= self.model.max_size

    @invariant()
    def same_entries_in_the_same_lru_order(self) -> None:
        if not hasattr(self, "core"):
            return
        entries = self.core.cache.entries()
        assert [key for key, _ in entries] == list(self.model.entries)
        for key, entry in entries:
            assert isinstance(key, tuple)
            expected = self.model.entries[key]
            assert entry.prompt is expected.prompt
            assert entry.etag == expected.etag
            assert entry.stored_at == expected.stored_at

    @invariant()
    def same_freshness_and_counters(self) -> None:
        if not hasattr(self, "core"):
            return
        now = self.clock()
        stats = self.core.stats()
        fresh = sum(1 for e in self.model.entries.values() if self.model.fresh(e, now))
        assert (stats["total_entries"], stats["fresh_entries"]) == (len(self.model.entries), fresh)
        assert stats["stale_entries"] == len(self.model.entries) - fresh
        model = self.model
        assert (stats["hits"], stats["stale_hits"], stats["misses"]) == (
            model.hits,
            model.stale_hits,
            model.misses,
        )
        assert stats["evictions"] == model.evictions


def test_cache_agrees_with_an_exact_lru_ttl_model() -> None:
    run_state_machine_as_test(
        CacheMachine,
        settings=settings(max_examples=300, stateful_step_count=50, deadline=None),
    )


def test_invalidate_refuses_an_empty_pattern_instead_of_clearing_everything() -> None:
    # At the cache level "" is a prefix of every id; the client refuses it and points to
    # cache_invalidate_all(), so the model never needs to know about it.
    core = ClientCore(
        ClientOptions.build(
            base_url="http://127.0.0.1:9",
            api_key=KEY,
            cache_ttl=300,
            cache_max_size=10,
            timeout=1.0,
            retry_count=0,
        ),
        clock=FakeClock(),
    )
    with pytest.raises(ValueError, match="cache_invalidate_all"):
        core.invalidate("")
