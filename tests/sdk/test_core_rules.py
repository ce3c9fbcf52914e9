"""The cache rules of the README ("Caching", "When the server is down"), one test per
rule, on the sans-IO core with a fake clock.

No sockets here: the core is driven the way the clients drive it (lookup, then the fetch's
`answered`/`failed`), with time moved by hand.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import pytest

from promptory import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ForbiddenError,
    MalformedResponseError,
    NotFoundError,
    Prompt,
    RateLimitError,
    ServerError,
)
from promptory._core import ClientCore, Miss, Stale
from promptory._fetch import Done, Fail, Retry
from promptory._options import BACKOFF_CAP, BACKOFF_MAX_DELAY, ClientOptions
from promptory._transport import transport_error
from promptory._wire import MAX_ERROR_MESSAGE, MAX_RETRY_AFTER

KEY = "pm_test_" + "x" * 40


def answer(fetch: Any, status: int, headers: Any, content: bytes) -> Any:
    """What a client's loop does with an answer: the fetch reads it, the core settles it."""
    return fetch.core.settle(fetch, fetch.read(status, headers, content))


#: What the transport boundary makes of a refused connection.
REFUSED = APIConnectionError("could not get an answer: connection refused")


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_core(clock: FakeClock, **overrides: object) -> ClientCore:
    settings: dict[str, object] = {
        "base_url": "http://127.0.0.1:9",
        "api_key": KEY,
        "cache_ttl": 300,
        "cache_max_size": 1000,
        "timeout": 10.0,
        "retry_count": 3,
    }
    settings.update(overrides)
    return ClientCore(ClientOptions.build(**settings), clock=clock, rng=lambda: 1.0)


def prompt_json(**fields: object) -> bytes:
    data: dict[str, object] = {
        "id": "p-1",
        "name": "greeting",
        "org": "myorg",
        "app": "myapp",
        "version": "1.0.0",
        "environment": "production",
        "body": "Hello {{ name }}",
        "model": {"default": "m"},
    }
    data.update(fields)
    return json.dumps(data).encode()


def fetch_by_id(
    core: ClientCore,
    status: int = 200,
    content: bytes | None = None,
    etag: str | None = '"1.0.0-aaaa"',
) -> Prompt:
    """Run a miss for id p-1 through the core to a 200 (or what is given)."""
    state = core.lookup_id("p-1")
    assert not isinstance(state, Prompt)
    fetch = core.prompt_fetch(state.key, state.entry)
    headers = httpx.Headers({"ETag": etag} if etag else {})
    step = answer(fetch, status, headers, content if content is not None else prompt_json())
    assert isinstance(step, Done), step
    assert isinstance(step.value, Prompt)
    return step.value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# Rule 1 ----------------------------------------------------------------------------------------


def test_rule1_fresh_hit_returns_the_cached_prompt_itself(clock: FakeClock) -> None:
    core = make_core(clock)
    stored = fetch_by_id(core)
    clock.advance(299.9)
    assert core.lookup_id("p-1") is stored
    assert core.flights == {}
    assert core.stats()["hits"] == 1


# Rule 2 ----------------------------------------------------------------------------------------


def test_rule2_stale_entry_is_served_and_asks_for_one_revalidation(clock: FakeClock) -> None:
    core = make_core(clock)
    stored = fetch_by_id(core)
    clock.advance(300.0)
    state = core.lookup_id("p-1")
    assert isinstance(state, Stale)
    assert state.entry.prompt is stored


def test_rule2_no_second_revalidation_while_one_is_in_flight(clock: FakeClock) -> None:
    core = make_core(clock)
    fetch_by_id(core)
    clock.advance(301)
    first = core.lookup_id("p-1")
    assert isinstance(first, Stale)
    core.flights[first.key] = object()  # what a client does when it starts the revalidation
    for _ in range(100):
        assert core.lookup_id("p-1") is first.entry.prompt  # served, nothing started
    assert core.stats()["stale_hits"] == 101


# Rule 3 is about I/O (single flight): see test_concurrency.py.

# Rule 4 ----------------------------------------------------------------------------------------


def test_rule4_request_for_a_key_with_a_known_etag_is_conditional(clock: FakeClock) -> None:
    core = make_core(clock)
    fetch_by_id(core, etag='"1.0.0-aaaa"')
    clock.advance(400)
    state = core.lookup_id("p-1")
    assert isinstance(state, Stale)
    fetch = core.prompt_fetch(state.key, state.entry, background=True)
    assert fetch.request.headers == {"If-None-Match": '"1.0.0-aaaa"'}


def test_rule4_request_without_a_known_etag_is_unconditional(clock: FakeClock) -> None:
    core = make_core(clock)
    state = core.lookup_id("p-1")
    assert isinstance(state, Miss)
    assert core.prompt_fetch(state.key, state.entry).request.headers == {}


# Rule 5 ----------------------------------------------------------------------------------------


def test_rule5_304_keeps_the_data_restarts_the_age_and_adopts_the_new_etag(
    clock: FakeClock,
) -> None:
    core = make_core(clock)
    stored = fetch_by_id(core, etag='"1.0.0-aaaa"')
    clock.advance(400)
    state = core.lookup_id("p-1")
    assert isinstance(state, Stale)
    fetch = core.prompt_fetch(state.key, state.entry, background=True)
    step = answer(fetch, 304, httpx.Headers({"ETag": '"1.0.0-bbbb"'}), b"")
    assert isinstance(step, Done)
    assert step.value is stored
    assert core.lookup_id("p-1") is stored  # fresh again
    entry = core.cache.peek(state.key)
    assert entry is not None
    assert entry.etag == '"1.0.0-bbbb"'
    assert entry.stored_at == clock.now


def test_rule5_304_without_etag_keeps_the_old_etag(clock: FakeClock) -> None:
    core = make_core(clock)
    fetch_by_id(core, etag='"1.0.0-aaaa"')
    clock.advance(400)
    state = core.lookup_id("p-1")
    assert isinstance(state, Stale)
    answer(core.prompt_fetch(state.key, state.entry), 304, httpx.Headers(), b"")
    entry = core.cache.peek(state.key)
    assert entry is not None
    assert entry.etag == '"1.0.0-aaaa"'


def test_rule5_304_for_an_entry_evicted_meanwhile_refetches_unconditionally(
    clock: FakeClock,
) -> None:
    core = make_core(clock)
    fetch_by_id(core)
    clock.advance(400)
    state = core.lookup_id("p-1")
    assert isinstance(state, Stale)
    fetch = core.prompt_fetch(state.key, state.entry)
    assert core.cache.clear() == 1
    step = answer(fetch, 304, httpx.Headers(), b"")
    assert isinstance(step, Retry)
    assert step.delay == 0
    assert "If-None-Match" not in step.request.headers
    final = answer(fetch, 200, httpx.Headers({"ETag": '"1.0.0-cccc"'}), prompt_json())
    assert isinstance(final, Done)
    assert core.lookup_id("p-1") is final.value


def test_rule5_a_second_unexpected_304_is_an_error_not_a_loop(clock: FakeClock) -> None:
    core = make_core(clock)
    state = core.lookup_id("p-1")
    assert isinstance(state, Miss)
    fetch = core.prompt_fetch(state.key, None)
    assert isinstance(answer(fetch, 304, httpx.Headers(), b""), Retry)
    step = answer(fetch, 304, httpx.Headers(), b"")
    assert isinstance(step, Fail)
    assert isinstance(step.error, MalformedResponseError)


# Rule 6 ----------------------------------------------------------------------------------------


def test_rule6_200_replaces_the_entry_and_its_etag(clock: FakeClock) -> None:
    core = make_core(clock)
    fetch_by_id(core, etag='"1.0.0-aaaa"')
    clock.advance(400)
    state = core.lookup_id("p-1")
    assert isinstance(state, Stale)
    step = answer(
        core.prompt_fetch(state.key, state.entry),
        200,
        httpx.Headers({"ETag": '"1.1.0-bbbb"'}),
        prompt_json(version="1.1.0", body="New"),
    )
    assert isinstance(step, Done)
    current = core.lookup_id("p-1")
    assert isinstance(current, Prompt)
    assert (current.version, current.body) == ("1.1.0", "New")
    entry = core.cache.peek(state.key)
    assert entry is not None
    assert entry.etag == '"1.1.0-bbbb"'


# Rule 7 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers"),
    [(500, {}), (502, {}), (503, {}), (504, {}), (429, {"Retry-After": "7"})],
)
def test_rule7_server_failure_with_a_cached_copy_serves_it_with_one_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, status: int, headers: dict[str, str]
) -> None:
    core = make_core(clock, retry_count=0)
    stored = fetch_by_id(core)
    clock.advance(400)
    state = core.lookup_id("p-1")
    assert isinstance(state, Stale)
    with caplog.at_level(logging.WARNING, logger="promptory"):
        step = answer(
            core.prompt_fetch(state.key, state.entry), status, httpx.Headers(headers), b"oops"
        )
    assert isinstance(step, Done)
    assert step.value is stored
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_rule7_transport_error_with_a_fresh_cached_copy_serves_it(clock: FakeClock) -> None:
    core = make_core(clock, cache_ttl=0, retry_count=0)
    stored = fetch_by_id(core)
    state = core.lookup_id("p-1")
    assert isinstance(state, Miss)  # TTL 0: revalidate in the caller
    step = core.prompt_fetch(state.key, state.entry).unanswered(REFUSED)
    assert isinstance(step, Done)
    assert step.value is stored
    assert core.stats()["stale_served_on_error"] == 1


def test_rule7_transport_error_without_a_cached_copy_fails(clock: FakeClock) -> None:
    core = make_core(clock, retry_count=0)
    state = core.lookup_id("p-1")
    assert isinstance(state, Miss)
    step = core.prompt_fetch(state.key, None).unanswered(REFUSED)
    assert isinstance(step, Fail)
    assert step.error is REFUSED


def test_the_transport_boundary_maps_httpx_errors_and_chains_them(clock: FakeClock) -> None:
    options = make_core(clock).options
    refused = httpx.ConnectError("refused")
    error = transport_error(refused, "prompt id 'p-1'", options)
    assert isinstance(error, APIConnectionError)
    assert error.__cause__ is refused
    timed_out = transport_error(httpx.ReadTimeout("slow"), "prompt id 'p-1'", options)
    assert isinstance(timed_out, APITimeoutError)


def test_rule7_failure_in_the_background_sets_a_growing_cooldown(clock: FakeClock) -> None:
    core = make_core(clock, retry_count=0)
    fetch_by_id(core)
    clock.advance(400)
    waits = []
    for _ in range(4):
        state = core.lookup_id("p-1")
        assert isinstance(state, Stale)  # a revalidation is due
        core.prompt_fetch(state.key, state.entry, background=True).unanswered(REFUSED)
        waits.append(state.entry.retry_at - clock.now)
        assert core.lookup_id("p-1") is state.entry.prompt  # cooling down: nothing starts
        clock.advance(waits[-1])
    assert waits == sorted(waits)
    assert waits[-1] > waits[0]


# Rule 8 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"), [(404, NotFoundError), (401, AuthenticationError), (403, ForbiddenError)]
)
def test_rule8_404_401_403_evict_the_entry_and_fail(
    clock: FakeClock, status: int, error: type[Exception]
) -> None:
    core = make_core(clock)
    fetch_by_id(core)
    clock.advance(400)
    state = core.lookup_id("p-1")
    assert isinstance(state, Stale)
    step = answer(
        core.prompt_fetch(state.key, state.entry, background=True),
        status,
        httpx.Headers(),
        b'{"error": {"code": "X", "message": "no"}}',
    )
    assert isinstance(step, Fail)
    assert isinstance(step.error, error)
    assert step.error.status_code == status
    assert core.cache.peek(state.key) is None


# Rule 9 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"<html>not json</html>",
        b"[1, 2]",
        json.dumps({"name": "greeting", "body": "x"}).encode(),
        json.dumps({"id": "p-1", "body": "x"}).encode(),
        json.dumps({"id": "p-1", "name": "greeting"}).encode(),
        prompt_json(model="gemini"),
        prompt_json(tags="a,b"),
        prompt_json(active="yes"),
        prompt_json(version=2),
        prompt_json(id="another-prompt"),
    ],
    ids=[
        "html",
        "array",
        "no-id",
        "no-name",
        "no-body",
        "model-not-object",
        "tags-not-list",
        "active-not-bool",
        "version-not-string",
        "wrong-prompt",
    ],
)
def test_rule9_malformed_answer_fails_and_never_enters_the_cache(
    clock: FakeClock, content: bytes
) -> None:
    core = make_core(clock)
    state = core.lookup_id("p-1")
    assert isinstance(state, Miss)
    step = answer(core.prompt_fetch(state.key, None), 200, httpx.Headers(), content)
    assert isinstance(step, Fail)
    assert isinstance(step.error, MalformedResponseError)
    assert "p-1" in str(step.error)
    assert len(core.cache) == 0


def test_rule9_malformed_answer_does_not_replace_a_good_entry(clock: FakeClock) -> None:
    core = make_core(clock)
    stored = fetch_by_id(core)
    clock.advance(400)
    state = core.lookup_id("p-1")
    assert isinstance(state, Stale)
    step = answer(core.prompt_fetch(state.key, state.entry), 200, httpx.Headers(), b"garbage")
    assert isinstance(step, Fail)
    entry = core.cache.peek(state.key)
    assert entry is not None
    assert entry.prompt is stored


# Rule 10 ---------------------------------------------------------------------------------------


def test_rule10_ttl_zero_revalidates_every_call_in_the_caller(clock: FakeClock) -> None:
    core = make_core(clock, cache_ttl=0)
    fetch_by_id(core)
    state = core.lookup_id("p-1")
    assert isinstance(state, Miss)
    assert state.entry is not None  # a conditional request, not a blind one
    request = core.prompt_fetch(state.key, state.entry).request
    assert "If-None-Match" in request.headers


def test_rule10_max_size_zero_caches_nothing(clock: FakeClock) -> None:
    core = make_core(clock, cache_max_size=0)
    fetch_by_id(core)
    assert len(core.cache) == 0
    assert isinstance(core.lookup_id("p-1"), Miss)


# Rule 11 ---------------------------------------------------------------------------------------


def test_rule11_lru_evicts_the_least_recently_used_entry(clock: FakeClock) -> None:
    core = make_core(clock, cache_max_size=2)
    for prompt_id in ("a", "b"):
        state = core.lookup_id(prompt_id)
        assert isinstance(state, Miss)
        answer(core.prompt_fetch(state.key, None), 200, httpx.Headers(), prompt_json(id=prompt_id))
    assert isinstance(core.lookup_id("a"), Prompt)  # "a" is now the most recently used
    state = core.lookup_id("c")
    assert isinstance(state, Miss)
    answer(core.prompt_fetch(state.key, None), 200, httpx.Headers(), prompt_json(id="c"))
    assert isinstance(core.lookup_id("a"), Prompt)
    assert isinstance(core.lookup_id("c"), Prompt)
    assert isinstance(core.lookup_id("b"), Miss)
    assert core.stats()["evictions"] == 1


def test_rule11_ages_are_measured_on_the_monotonic_clock() -> None:
    core = ClientCore(
        ClientOptions.build(
            base_url="http://127.0.0.1:9",
            api_key=KEY,
            cache_ttl=1,
            cache_max_size=1,
            timeout=1,
            retry_count=0,
        )
    )
    assert core.clock is time.monotonic


# Stale bounds ----------------------------------------------------------------------------------


def test_max_stale_past_the_bound_fetches_in_the_caller(clock: FakeClock) -> None:
    core = make_core(clock, cache_ttl=10, max_stale=60)
    fetch_by_id(core)
    clock.advance(10 + 59)
    assert isinstance(core.lookup_id("p-1"), Stale)
    clock.advance(2)
    state = core.lookup_id("p-1")
    assert isinstance(state, Miss)
    assert state.entry is not None


def test_max_stale_past_the_bound_is_not_served_on_error(clock: FakeClock) -> None:
    core = make_core(clock, cache_ttl=10, max_stale=60, retry_count=0)
    fetch_by_id(core)
    clock.advance(100)
    state = core.lookup_id("p-1")
    assert isinstance(state, Miss)
    step = core.prompt_fetch(state.key, state.entry).unanswered(REFUSED)
    assert isinstance(step, Fail)


def test_pinned_ref_is_never_stale(clock: FakeClock) -> None:
    core = make_core(clock, cache_ttl=1)
    state = core.lookup_id("p-1", ref="v1")
    assert isinstance(state, Miss)
    assert core.prompt_fetch(state.key, None).request.params == {"ref": "v1"}
    immutable = httpx.Headers({"Cache-Control": "private, max-age=31536000, immutable"})
    answer(core.prompt_fetch(state.key, None), 200, immutable, prompt_json())
    clock.advance(10**6)
    assert isinstance(core.lookup_id("p-1", ref="v1"), Prompt)
    assert isinstance(core.lookup_id("p-1"), Miss)  # the unpinned key is separate


def test_a_branch_ref_ages_like_any_entry(clock: FakeClock) -> None:
    core = make_core(clock, cache_ttl=1)
    state = core.lookup_id("p-1", ref="main")
    assert isinstance(state, Miss)
    live = httpx.Headers({"Cache-Control": "private, max-age=60, stale-while-revalidate=300"})
    answer(core.prompt_fetch(state.key, None), 200, live, prompt_json())
    clock.advance(2)
    assert isinstance(core.lookup_id("p-1", ref="main"), Stale)


def test_non_canonical_uuid_spellings_name_the_same_prompt(clock: FakeClock) -> None:
    core = make_core(clock)
    canonical = "550e8400-e29b-41d4-a716-446655440000"
    for spelling in (canonical.upper(), "{" + canonical + "}", canonical.replace("-", "")):
        state = core.lookup_id(spelling)
        assert isinstance(state, Miss)
        step = answer(
            core.prompt_fetch(state.key, None), 200, httpx.Headers(), prompt_json(id=canonical)
        )
        assert isinstance(step, Done), step


# Retries ---------------------------------------------------------------------------------------


def test_retry_count_is_the_number_of_retries_after_the_first_attempt(clock: FakeClock) -> None:
    core = make_core(clock, retry_count=3)
    fetch = core.prompt_fetch(("id", "p-1", None), None)
    steps = [answer(fetch, 503, httpx.Headers(), b"") for _ in range(4)]
    assert [type(s) for s in steps] == [Retry, Retry, Retry, Fail]
    final = steps[-1]
    assert isinstance(final, Fail)
    assert isinstance(final.error, ServerError)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 429])
def test_4xx_answers_are_never_retried(clock: FakeClock, status: int) -> None:
    core = make_core(clock, retry_count=3)
    fetch = core.prompt_fetch(("id", "p-1", None), None)
    assert isinstance(answer(fetch, status, httpx.Headers(), b""), Fail)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried(clock: FakeClock, status: int) -> None:
    core = make_core(clock, retry_count=1)
    fetch = core.prompt_fetch(("id", "p-1", None), None)
    assert isinstance(answer(fetch, status, httpx.Headers(), b""), Retry)


def test_500_is_not_retried(clock: FakeClock) -> None:
    core = make_core(clock, retry_count=3)
    fetch = core.prompt_fetch(("id", "p-1", None), None)
    assert isinstance(answer(fetch, 500, httpx.Headers(), b""), Fail)


def test_backoff_is_exponential_with_jitter_and_capped_in_total() -> None:
    core = make_core(FakeClock(), retry_count=50)
    low = [core_with_rng(0.0).backoff(n, 0.0) for n in range(6)]
    high = [core_with_rng(1.0).backoff(n, 0.0) for n in range(6)]
    assert high[:4] == [0.1, 0.2, 0.4, 0.8]
    assert high[4] == high[5] == BACKOFF_MAX_DELAY
    assert all(lo == pytest.approx(hi / 2) for lo, hi in zip(low, high, strict=True))
    fetch = core.prompt_fetch(("id", "p-1", None), None)
    delays = []
    for _ in range(50):
        step = fetch.unanswered(REFUSED)
        if isinstance(step, Retry):
            delays.append(step.delay)
    assert sum(delays) == pytest.approx(BACKOFF_CAP)
    assert len(delays) == 50


def core_with_rng(value: float) -> ClientCore:
    core = make_core(FakeClock())
    core.rng = lambda: value
    return core


def test_rate_limit_error_carries_retry_after_in_seconds(clock: FakeClock) -> None:
    core = make_core(clock)
    fetch = core.prompt_fetch(("id", "p-1", None), None)
    step = answer(fetch, 429, httpx.Headers({"Retry-After": "12"}), b"")
    assert isinstance(step, Fail)
    assert isinstance(step.error, RateLimitError)
    assert step.error.retry_after == 12.0


def test_malformed_background_answer_starts_the_cooldown_too(clock: FakeClock) -> None:
    core = make_core(clock)
    fetch_by_id(core)
    clock.advance(400)
    state = core.lookup_id("p-1")
    assert isinstance(state, Stale)
    step = answer(
        core.prompt_fetch(state.key, state.entry, background=True),
        200,
        httpx.Headers(),
        b"<html>proxy error page</html>",
    )
    assert isinstance(step, Fail)
    assert core.lookup_id("p-1") is state.entry.prompt  # cooling down: nothing starts
    assert core.stats()["revalidation_failures"] == 1


def test_retry_after_is_capped(clock: FakeClock) -> None:
    # A server saying "come back in 1e308 s" must not park a key for ever.
    fetch = make_core(clock, retry_count=0).prompt_fetch(("id", "p-1", None), None)
    step = answer(fetch, 429, httpx.Headers({"Retry-After": "1e308"}), b"")
    assert isinstance(step, Fail)
    assert isinstance(step.error, RateLimitError)
    assert step.error.retry_after == MAX_RETRY_AFTER


def test_a_huge_error_message_is_cut(clock: FakeClock) -> None:
    fetch = make_core(clock, retry_count=0).prompt_fetch(("id", "p-1", None), None)
    body = json.dumps({"error": {"code": "PROMPT_NOT_FOUND", "message": "m" * 5_000_000}})
    step = answer(fetch, 404, httpx.Headers(), body.encode())
    assert isinstance(step, Fail)
    assert len(str(step.error)) < MAX_ERROR_MESSAGE + 200
    assert "more characters" in str(step.error)
