"""Every fault of `FaultProxy`, in every cache state (cold, warm fresh, warm stale), for both
clients (sync, async).

The legacy server sits behind the proxy. Each cell primes the cache in `pass` mode as its
state needs, switches the proxy to the fault, and checks the exact outcome (README "Caching",
"When the server is down" and "Errors"):

- cold: the fault's exception, after the fault's number of attempts, within the documented
  bound ``(retry_count + 1) * timeout + BACKOFF_CAP`` (plus `SLACK`), and nothing cached;
- warm fresh: the cached prompt at once, no request, no warning;
- warm stale: the stale prompt at once, then exactly one background revalidation meeting the
  fault, one warning, the entry still served, and a cooldown before the next revalidation.

Each cell is recorded in the matrix printed at the end of the run (see conftest.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import pytest

from promptory import (
    APIConnectionError,
    APITimeoutError,
    MalformedResponseError,
    PromptoryError,
    RateLimitError,
    ServerError,
)
from promptory._options import BACKOFF_CAP
from sdk.conftest import Driver, wait_until

from .conftest import PROMPT_ID, Cell, ClientFactory, Matrix
from .proxy import RETRY_AFTER_DATE_AHEAD, FaultProxy

TIMEOUT = 0.3
RETRIES = 2
#: The documented bound on one call against a dead or stalled server.
GIVE_UP_AFTER = (RETRIES + 1) * TIMEOUT + BACKOFF_CAP
#: Headroom for a noisy 2-core machine on top of every time bound: a loaded CI runner can
#: pause a thread for a second or more. A broken per-attempt deadline costs far more (drip
#: and stall run for many seconds without one), so the bounds still catch it.
SLACK = 2.0
#: A call served from the cache takes about a millisecond. One that waited on a revalidation
#: against a stalled server would take all its attempts' timeouts (0.9 s) and backoffs; the
#: bound is just under that, not near the cache's speed, so a slow machine never reaches it.
AT_ONCE = TIMEOUT * (RETRIES + 1)
#: A TTL that keeps the primed entry fresh for the whole test.
LONG_TTL = 60.0
#: A TTL short enough to wait out.
SHORT_TTL = 0.1
#: Every attempt the client may make: the first and its retries.
ALL_ATTEMPTS = RETRIES + 1


@dataclass(frozen=True)
class Fault:
    """A proxy mode and what a client must make of it."""

    mode: str
    error: type[PromptoryError]
    attempts: int  # requests the proxy sees during one get
    status: int | None = None
    retry_after: float | None = None


FAULTS = [
    Fault("refuse", APIConnectionError, attempts=0),  # retried, but no request ever arrives
    Fault("stall", APITimeoutError, attempts=ALL_ATTEMPTS),
    Fault("reset", APIConnectionError, attempts=ALL_ATTEMPTS),
    Fault("drip", APITimeoutError, attempts=ALL_ATTEMPTS),
    Fault("truncate", APIConnectionError, attempts=ALL_ATTEMPTS),
    Fault("garble", MalformedResponseError, attempts=1, status=200),  # never retried
    Fault("status:500", ServerError, attempts=1, status=500),  # 500 is not retried
    Fault("status:502", ServerError, attempts=ALL_ATTEMPTS, status=502),
    Fault("status:503", ServerError, attempts=ALL_ATTEMPTS, status=503),
    Fault("status:504", ServerError, attempts=ALL_ATTEMPTS, status=504),
    Fault("429-seconds", RateLimitError, attempts=1, status=429, retry_after=7.0),
    Fault("429-date", RateLimitError, attempts=1, status=429, retry_after=RETRY_AFTER_DATE_AHEAD),
]

with_every_fault = pytest.mark.parametrize("fault", FAULTS, ids=[f.mode for f in FAULTS])


def promptory_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.split(".")[0] == "promptory" and r.levelno >= logging.WARNING
    ]


def prime(client: Driver, proxy: FaultProxy, fault: Fault) -> object:
    """Cache the prompt through the proxy in `pass` mode, then switch to `fault`."""
    primed = client.get(PROMPT_ID)
    proxy.set_mode(fault.mode)
    proxy.reset_attempts()
    return primed


@with_every_fault
def test_cold_get_raises_the_faults_error_after_its_attempts_within_the_bound(
    fault: Fault, proxy: FaultProxy, make_client: ClientFactory, client_kind: str, matrix: Matrix
) -> None:
    client = make_client(proxy.url, timeout=TIMEOUT, retry_count=RETRIES)
    proxy.set_mode(fault.mode)

    started = time.monotonic()
    with pytest.raises(PromptoryError) as caught:
        client.get(PROMPT_ID)
    elapsed = time.monotonic() - started

    error = caught.value
    cell = matrix.record(
        fault.mode, "cold", client_kind, Cell(type(error).__name__, proxy.attempts(), elapsed)
    )
    assert type(error) is fault.error, repr(error)
    assert error.status_code == fault.status
    assert proxy.attempts() == fault.attempts
    assert elapsed <= GIVE_UP_AFTER + SLACK
    assert client.cache_stats()["total_entries"] == 0
    if fault.retry_after is not None:
        assert isinstance(error, RateLimitError)
        assert error.retry_after == pytest.approx(fault.retry_after, abs=2.0)
    cell.passed = True


@with_every_fault
def test_fresh_entry_is_served_at_once_without_touching_the_faulty_server(
    fault: Fault,
    proxy: FaultProxy,
    make_client: ClientFactory,
    client_kind: str,
    matrix: Matrix,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(proxy.url, timeout=TIMEOUT, retry_count=RETRIES, cache_ttl=LONG_TTL)
    primed = prime(client, proxy, fault)
    caplog.clear()

    started = time.monotonic()
    served = client.get(PROMPT_ID)
    elapsed = time.monotonic() - started

    cell = matrix.record(
        fault.mode, "fresh", client_kind, Cell("cached", proxy.attempts(), elapsed)
    )
    assert served is primed
    assert elapsed < AT_ONCE
    assert proxy.attempts() == 0
    assert client.cache_stats()["in_flight"] == 0
    assert promptory_warnings(caplog) == []
    cell.passed = True


@with_every_fault
def test_stale_entry_is_served_at_once_while_one_revalidation_meets_the_fault(
    fault: Fault,
    proxy: FaultProxy,
    make_client: ClientFactory,
    client_kind: str,
    matrix: Matrix,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(proxy.url, timeout=TIMEOUT, retry_count=RETRIES, cache_ttl=SHORT_TTL)
    primed = client.get(PROMPT_ID)
    wait_until(lambda: client.cache_stats()["stale_entries"] == 1, what="the entry to go stale")
    proxy.set_mode(fault.mode)
    proxy.reset_attempts()
    caplog.clear()

    started = time.monotonic()
    served = client.get(PROMPT_ID)
    elapsed = time.monotonic() - started
    client.wait_idle(timeout=GIVE_UP_AFTER + SLACK)

    warnings = promptory_warnings(caplog)
    cell = matrix.record(
        fault.mode,
        "stale",
        client_kind,
        Cell(f"stale+{len(warnings)}warn", proxy.attempts(), elapsed),
    )
    assert served is primed
    assert elapsed < AT_ONCE
    assert client.cache_stats()["revalidations"] == 1
    assert proxy.attempts() == fault.attempts
    assert len(warnings) == 1, [r.getMessage() for r in warnings]

    # The entry is still served, and the failed revalidation is not retried on the next hits.
    assert client.get(PROMPT_ID) is primed
    assert client.get(PROMPT_ID) is primed
    stats = client.cache_stats()
    assert (stats["revalidations"], stats["in_flight"]) == (1, 0), (
        "a stale hit right after a failed revalidation started another one: no cooldown"
    )
    assert proxy.attempts() == fault.attempts
    cell.passed = True
