"""Figure 4: stale hits — served at once, revalidated off the caller's path, one at a time.

The server is ours, wrapped in `SlowApp` so every request takes `DELAY` seconds: a
revalidation is then in flight for most of the time, as it is against a real server far
away, and the wrapper counts how many requests are in flight at once.

* Caller's cost: ``get_by_name`` on a client with a 1 µs TTL (every hit is stale; a 304
  leaves the entry stale again at once) against a fresh hit on a client with the default TTL,
  the same call, interleaved. Stale hits include the ones that start a revalidation.
  Target: at most 2x.
* One at a time: 8 threads make 10,000 stale hits between them, with short pauses so the
  run spans many revalidations; the most requests ever in flight at the server, and the
  most ``in_flight`` the client reported (sampled every 100 hits), must be 1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from itertools import repeat
from time import perf_counter_ns

from promptory import PromptClient

from .client_hot import APP, NAME, ORG
from .measure import Figure, calibrate, interleave, per_op
from .servers import SlowApp, thread_server
from .session import Session

__all__ = ["run"]

#: Seconds every request takes at the server while the caller's cost is timed.
DELAY = 0.02
#: Seconds every request takes while counting concurrent revalidations: short, so the
#: 10,000 hits span many revalidations one after another.
COUNT_DELAY = 0.002
STALE_TTL = 1e-6
THREADS = 8
HITS = 10_000


def _hits(client: PromptClient) -> Callable[[int], int]:
    def run(n: int) -> int:
        started = perf_counter_ns()
        for _ in repeat(None, n):
            client.get_by_name(ORG, APP, NAME)
        return perf_counter_ns() - started

    return run


def _concurrency(client: PromptClient, slow: SlowApp) -> tuple[int, int, int, int]:
    """10,000 stale hits from `THREADS` threads. Returns (most requests in flight at the
    server, most in_flight seen by the client, revalidations started, requests served)."""
    slow.delay = COUNT_DELAY
    time.sleep(DELAY * 2)  # let a revalidation still running at the old delay finish
    slow.reset()
    before = client.cache_stats()
    per_thread = HITS // THREADS
    seen: list[int] = []
    barrier = threading.Barrier(THREADS)
    deadline = time.monotonic() + 30.0

    def worker() -> None:
        barrier.wait(10.0)
        for i in range(per_thread):
            client.get_by_name(ORG, APP, NAME)
            if i % 100 == 0:
                seen.append(client.cache_stats()["in_flight"])
            if i % 25 == 0:
                time.sleep(0.001)  # spread the hits over many revalidations
            if time.monotonic() > deadline:
                break

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60.0)
    after = client.cache_stats()
    assert after["stale_hits"] - before["stale_hits"] == per_thread * THREADS, (before, after)
    time.sleep(COUNT_DELAY * 5)
    return (
        slow.max_active,
        max(seen),
        after["revalidations"] - before["revalidations"],
        slow.requests,
    )


def run(session: Session) -> list[Figure]:
    """Figure 4."""
    holder: list[SlowApp] = []

    def wrap(app: object) -> SlowApp:
        holder.append(SlowApp(app, DELAY))  # type: ignore[arg-type]
        return holder[0]

    with thread_server(session.small_repo(), session.api_key, wrap=wrap) as server:
        slow = holder[0]
        with (
            PromptClient(server.url, server.api_key, cache_ttl=STALE_TTL) as stale,
            PromptClient(server.url, server.api_key) as fresh,
        ):
            assert stale.get_by_name(ORG, APP, NAME) == fresh.get_by_name(ORG, APP, NAME)
            session.log("stale: stale hit vs fresh hit in the caller")
            stale_run, fresh_run = _hits(stale), _hits(fresh)
            n = calibrate(fresh_run)
            before = stale.cache_stats()
            ours, base = interleave(per_op(stale_run, n), per_op(fresh_run, n))
            after = stale.cache_stats()
            assert after["hits"] == before["hits"], "a 'stale' client hit fresh entries"
            revalidations = after["revalidations"] - before["revalidations"]
            session.log(f"stale: {HITS:,} stale hits from {THREADS} threads")
            at_server, in_flight, started, requests = _concurrency(stale, slow)
    stale_hits = after["stale_hits"] - before["stale_hits"]
    return [
        Figure.from_samples(
            "stale.hit",
            "stale hit in the caller (revalidation off its path)",
            "ns/op",
            ours,
            base,
            baseline_label="fresh hit, same call",
            op="<=",
            target=2.0,
            notes=[
                f"{n:,} calls per sample; server answers after {DELAY * 1000:g} ms; "
                f"{revalidations} revalidations started during {stale_hits:,} stale hits"
            ],
            extra={"calls_per_sample": n, "revalidations": revalidations},
        ),
        Figure(
            "stale.one_at_a_time",
            f"revalidations in flight at once, {HITS:,} stale hits",
            "requests",
            float(max(at_server, in_flight)),
            1.0,
            baseline_label="one revalidation at a time",
            op="<=",
            target=1.0,
            ours_samples=[float(at_server), float(in_flight)],
            baseline_samples=[1.0, 1.0],
            notes=[
                f"{THREADS} threads; most in flight at the server {at_server}, most "
                f"in_flight seen by the client {in_flight}; {started} revalidations "
                f"started, {requests} requests served, one after another "
                f"({COUNT_DELAY * 1000:g} ms each)"
            ],
            extra={
                "max_in_flight_at_server": at_server,
                "max_in_flight_reported": in_flight,
                "revalidations_started": started,
                "requests_served": requests,
            },
        ),
    ]
