"""Figure 5: many threads on warm hits — no lock convoy.

Ours: 32 threads share one `PromptClient`; after a barrier each makes `per_thread` warm
hits (``get_by_name("myorg", "myapp", "greeting")``); the total hits over the wall time from
the first thread's start to the last one's end. Baseline: one thread making
``32 * per_thread`` of the same hits. Both run in threads started before timing; the rounds
are interleaved. Target: the 32 threads reach at least 0.7x the one thread's throughput.
(Under the GIL, threads cannot add throughput; a lock on the hit path would take it away.)
"""

from __future__ import annotations

import threading
from itertools import repeat
from time import perf_counter_ns

from promptory import PromptClient

from .client_hot import APP, NAME, ORG, hit_loop
from .measure import MIN_SAMPLE_NS, Figure, calibrate, interleave, no_gc
from .servers import thread_server
from .session import Session

__all__ = ["run"]

THREADS = 32
#: A sample (all the hits of one round) lasts about this long.
SAMPLE_NS = 4 * MIN_SAMPLE_NS
_JOIN_TIMEOUT = 60.0


def _throughput(client: PromptClient, threads: int, per_thread: int) -> float:
    """Hits per second of `threads` threads making `per_thread` hits each after a barrier."""
    barrier = threading.Barrier(threads + 1)
    spans: list[tuple[int, int]] = []

    def worker() -> None:
        barrier.wait(_JOIN_TIMEOUT)
        started = perf_counter_ns()
        for _ in repeat(None, per_thread):
            client.get_by_name(ORG, APP, NAME)
        spans.append((started, perf_counter_ns()))  # list.append is atomic

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    with no_gc():
        barrier.wait(_JOIN_TIMEOUT)
        for thread in workers:
            thread.join(_JOIN_TIMEOUT)
    assert len(spans) == threads, "a worker thread did not finish"
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    return threads * per_thread / (elapsed / 1e9)


def run(session: Session) -> list[Figure]:
    """Figure 5."""
    with (
        thread_server(session.small_repo(), session.api_key) as server,
        PromptClient(server.url, server.api_key) as client,
    ):
        client.get_by_name(ORG, APP, NAME)
        total = calibrate(hit_loop(client), SAMPLE_NS)
        per_thread = max(1, total // THREADS)
        session.log(f"threads: {THREADS} threads x {per_thread:,} warm hits vs one thread")
        ours, base = interleave(
            lambda: _throughput(client, THREADS, per_thread),
            lambda: _throughput(client, 1, THREADS * per_thread),
            rounds=9,
        )
        stats = client.cache_stats()
    assert stats["misses"] == 1, stats
    return [
        Figure.from_samples(
            "threads.warm_hits",
            f"{THREADS} threads of warm hits, total throughput",
            "hits/s",
            ours,
            base,
            baseline_label=f"one thread making all {THREADS * per_thread:,} hits",
            op=">=",
            target=0.7,
            notes=[f"{per_thread:,} hits per thread per sample; one shared PromptClient"],
            extra={"hits_per_thread": per_thread, "threads": THREADS},
        )
    ]
