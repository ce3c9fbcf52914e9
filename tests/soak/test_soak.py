"""The soak: mixed load from both clients while commits land, with nothing going wrong.

For `SOAK_SECONDS` (default 60; ``make soak``, or ``SOAK_SECONDS=5`` in CI):

* a real server (``create_app`` under uvicorn, on 127.0.0.1) follows a real repository
  while a committer changes the bodies of a few prompts every second;
* 32 threads share one `PromptClient` and 200 tasks share one `AsyncPromptClient` (on its
  own event loop, in its own thread), both with a 0.2 s TTL so stale entries are revalidated
  all the time, mixing ``get``, ``get_by_name``, ``render`` (local, and on the server for
  prompts with an include), ``prefetch``, ``cache_stats`` and the odd ``cache_invalidate``.

Checks: no call raised, and every body (and rendered text) a client got is one the committer
committed for that prompt; the server answered no 5xx and served the last commit; the
clients saw prompts change; the number of threads stayed under `thread_bound` all along, and
no client thread outlived its client; the process's RSS grew by less than 10% from the end
of the warm-up (20% of the run, at least a second) to the end. A summary is printed (run with
``-s``) and added to the terminal summary.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest

from promptory import AsyncPromptClient, Prompt, PromptClient
from promptory.server.app import ServerSettings, create_app
from promptory.server.files import prompt_uuid
from promptory.server.keys import KeyRecord, KeyRing, generate_key
from promptory.server.renderpool import RenderCapacity
from promptory.server.runner import BackgroundServer
from support.gitrepo import PromptRepo

from .conftest import SUMMARIES

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
SYNC_THREADS = 32
ASYNC_TASKS = 200
CACHE_TTL = 0.2
COMMIT_EVERY = 1.0
#: Prompts rendered locally (no include) and on the server (with an include).
PLAIN = [f"plain_{n}" for n in range(8)]
INCLUDING = [f"including_{n}" for n in range(4)]
CHANGED_PER_COMMIT = 3
VARIABLES = {"who": "Ann"}
#: RSS may grow by less than this fraction from the end of the warm-up to the end.
RSS_GROWTH = 0.10
#: Calls a worker makes at most, whatever the clock says.
MAX_CALLS_PER_WORKER = 5_000_000


def _bodies(name: str, version: int) -> tuple[str, str]:
    """The body of `name` at `version`, and its text rendered with `VARIABLES`."""
    if name in INCLUDING:
        return (
            f'{{% include "snippet" %}}{name} v{version} for {{{{ who }}}}\n',
            f"SNIPPET {name} v{version} for Ann\n",
        )
    return f"{name} v{version}: hello {{{{ who }}}}\n", f"{name} v{version}: hello Ann\n"


# --- the repository and its committer -------------------------------------------------------------


class Committed:
    """Every body and rendered text committed per prompt (only ever added to; a reader sees
    a version once its commit can be served, since it is recorded before the commit)."""

    def __init__(self) -> None:
        self.bodies: dict[str, frozenset[str]] = {}
        self.rendered: dict[str, frozenset[str]] = {}
        self.versions: dict[str, int] = {}

    def record(self, name: str, version: int) -> str:
        body, rendered = _bodies(name, version)
        self.bodies[name] = self.bodies.get(name, frozenset()) | {body}
        self.rendered[name] = self.rendered.get(name, frozenset()) | {rendered}
        self.versions[name] = version
        return body


def seed_repository(repo: PromptRepo, committed: Committed) -> None:
    for name in PLAIN + INCLUDING:
        repo.write_prompt("o", "a", name, committed.record(name, 0), version="1.0.0")
    repo.write_prompt("o", "a", "snippet", "SNIPPET ", version="1.0.0")
    repo.commit("first versions")


class Committer(threading.Thread):
    """Changes `CHANGED_PER_COMMIT` prompts and commits, every `COMMIT_EVERY` seconds."""

    def __init__(self, repo: PromptRepo, committed: Committed, stop: threading.Event) -> None:
        super().__init__(name="soak-committer", daemon=True)
        self.repo = repo
        self.committed = committed
        self.stop = stop
        self.shas: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        names = PLAIN + INCLUDING
        turn = 0
        try:
            for _ in range(int(SOAK_SECONDS / COMMIT_EVERY) + 10):
                if self.stop.wait(COMMIT_EVERY):
                    break
                for _ in range(CHANGED_PER_COMMIT):
                    name = names[turn % len(names)]
                    turn += 1
                    version = self.committed.versions[name] + 1
                    body = self.committed.record(name, version)
                    self.repo.write_prompt("o", "a", name, body, version=f"1.0.{version}")
                self.shas.append(self.repo.commit(f"commit {len(self.shas) + 1}"))
        except BaseException as exc:  # reported by the test
            self.error = exc


# --- the server -----------------------------------------------------------------------------------


class CountingApp:
    """An ASGI wrapper counting the answers the server sends, by status."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.statuses: Counter[int] = Counter()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


# --- what the workers record ----------------------------------------------------------------------


@dataclass
class Record:
    """What the clients did and what went wrong (thread-safe enough: list appends and
    Counter updates under one lock)."""

    calls: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def count(self, calls: Counter[str]) -> None:
        with self.lock:
            self.calls.update(calls)


class Checker:
    """Checks an answer against what was committed, and notes the versions seen."""

    def __init__(self, committed: Committed, record: Record) -> None:
        self.committed = committed
        self.record = record
        self.seen: dict[str, set[str]] = {name: set() for name in PLAIN + INCLUDING}

    def prompt(self, name: str, prompt: object) -> None:
        if not isinstance(prompt, Prompt):
            self.record.error(f"{name}: got {prompt!r}, not a Prompt")
            return
        if prompt.body not in self.committed.bodies[name]:
            self.record.error(f"{name}: body {prompt.body!r} was never committed")
            return
        self.seen[name].add(prompt.body)

    def rendered(self, name: str, text: str) -> None:
        if text not in self.committed.rendered[name]:
            self.record.error(f"{name}: rendered {text!r}, which no commit gives")


class Mix:
    """One worker's choice of calls: the same weights for threads and tasks."""

    # Per mille. Invalidations are rare (a few a second across all workers): each one
    # turns the next calls into misses, and revalidation is what the soak is about.
    WEIGHTS: ClassVar[dict[str, int]] = {
        "get": 350,
        "get_by_name": 250,
        "render": 250,
        "prefetch": 50,
        "cache_stats": 99,
        "cache_invalidate": 1,
    }

    def __init__(self, seed: int, ids: dict[str, str]) -> None:
        self.random = random.Random(seed)
        self.ids = ids
        self.names = PLAIN + INCLUDING
        self.kinds = list(self.WEIGHTS)
        self.weights = list(self.WEIGHTS.values())

    def next(self) -> tuple[str, str]:
        return (
            self.random.choices(self.kinds, self.weights)[0],
            self.random.choice(self.names),
        )

    def prefetch_targets(self, name: str) -> list[Any]:
        other = self.random.choice(self.names)
        return [self.ids[name], f"o/a/{other}", ("o", "a", self.random.choice(self.names))]

    def invalidation(self, name: str) -> str:
        return self.random.choice([name, "o/a", self.ids[name][:8]])


def _check_prefetch(checker: Checker, ids: dict[str, str], result: dict[str, Any]) -> None:
    """Check each prompt `prefetch` answered, by its label (an id or ``o/a/<name>``)."""
    names_by_id = {prompt_id: name for name, prompt_id in ids.items()}
    for label, value in result.items():
        name = label.removeprefix("o/a/") if label.startswith("o/a/") else names_by_id.get(label)
        if name not in checker.seen:
            checker.record.error(f"prefetch answered {label!r}, which names no prompt")
            continue
        checker.prompt(name, value)


def sync_worker(
    client: PromptClient, mix: Mix, checker: Checker, record: Record, deadline: float
) -> None:
    calls: Counter[str] = Counter()
    try:
        for _ in range(MAX_CALLS_PER_WORKER):
            if time.monotonic() >= deadline:
                break
            kind, name = mix.next()
            calls[kind] += 1
            try:
                if kind == "get":
                    checker.prompt(name, client.get(mix.ids[name]))
                elif kind == "get_by_name":
                    checker.prompt(name, client.get_by_name("o", "a", name))
                elif kind == "render":
                    checker.rendered(name, client.render(mix.ids[name], VARIABLES))
                elif kind == "prefetch":
                    targets = mix.prefetch_targets(name)
                    _check_prefetch(checker, mix.ids, client.prefetch(targets))
                elif kind == "cache_stats":
                    stats = client.cache_stats()
                    if stats["total_entries"] < 0 or stats["total_entries"] > stats["max_size"]:
                        record.error(f"cache_stats out of range: {stats}")
                else:
                    client.cache_invalidate(mix.invalidation(name))
            except Exception as exc:
                record.error(f"sync {kind} {name}: {type(exc).__name__}: {exc}")
            time.sleep(mix.random.uniform(0, 0.004))
    finally:
        record.count(calls)


async def async_worker(
    client: AsyncPromptClient, mix: Mix, checker: Checker, record: Record, deadline: float
) -> None:
    calls: Counter[str] = Counter()
    try:
        for _ in range(MAX_CALLS_PER_WORKER):
            if time.monotonic() >= deadline:
                break
            kind, name = mix.next()
            calls[kind] += 1
            try:
                if kind == "get":
                    checker.prompt(name, await client.get(mix.ids[name]))
                elif kind == "get_by_name":
                    checker.prompt(name, await client.get_by_name("o", "a", name))
                elif kind == "render":
                    checker.rendered(name, await client.render(mix.ids[name], VARIABLES))
                elif kind == "prefetch":
                    targets = mix.prefetch_targets(name)
                    _check_prefetch(checker, mix.ids, await client.prefetch(targets))
                elif kind == "cache_stats":
                    stats = client.cache_stats()
                    if stats["total_entries"] < 0 or stats["total_entries"] > stats["max_size"]:
                        record.error(f"cache_stats out of range: {stats}")
                else:
                    client.cache_invalidate(mix.invalidation(name))
            except Exception as exc:
                record.error(f"async {kind} {name}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(mix.random.uniform(0, 0.02))
    finally:
        record.count(calls)


class LogRecorder(logging.Handler):
    """Records every warning or error logged on the ``promptory`` loggers (client and
    server): a stale copy served on an error, a failed background revalidation, a 500."""

    def __init__(self, record: Record) -> None:
        super().__init__(logging.WARNING)
        self.record = record

    def emit(self, entry: logging.LogRecord) -> None:
        self.record.error(f"logged {entry.levelname} on {entry.name}: {entry.getMessage()}")


# --- threads and memory ---------------------------------------------------------------------------


@dataclass
class Sample:
    at: float  # seconds since the load started
    threads: int
    rss: int
    names: Counter[str]


def _thread_kind(name: str) -> str:
    """A thread's name without its number: what kind of thread it is."""
    return name.rstrip("0123456789_-") or name


class Sampler(threading.Thread):
    """Samples the thread count and the RSS every `interval` seconds until stopped."""

    def __init__(self, started: float, stop: threading.Event, interval: float = 0.1) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.started = started
        self.stop = stop
        self.interval = interval
        self.samples: list[Sample] = []
        self.process = psutil.Process()

    def take(self) -> Sample:
        threads = threading.enumerate()
        return Sample(
            at=time.monotonic() - self.started,
            threads=len(threads),
            rss=self.process.memory_info().rss,
            names=Counter(_thread_kind(thread.name) for thread in threads),
        )

    def run(self) -> None:
        for _ in range(int((SOAK_SECONDS + 300) / self.interval)):
            self.samples.append(self.take())
            if self.stop.wait(self.interval):
                break


def thread_bound(baseline: int) -> tuple[int, str]:
    """The most threads the run may have, and why: the threads there before the server,
    plus every thread the run may start. Client threads are bounded by construction (a
    pool of revalidators, prefetch pools of at most one thread per target), the server's
    by AnyIO's thread limiter; a thread per call would blow through it within seconds."""
    parts = {
        "before the run": baseline,
        "uvicorn + store poller": 2,
        "server thread pool (AnyIO's limiter)": 40,
        "sync workers": SYNC_THREADS,
        "async loop + committer + sampler": 3,
        "sync client revalidators": 2,
        "prefetch pools (3 targets x 32 workers)": 3 * SYNC_THREADS,
    }
    return sum(parts.values()), " + ".join(f"{n} {what}" for what, n in parts.items())


# --- the test -------------------------------------------------------------------------------------


@dataclass
class Summary:
    seconds: float
    calls: Counter[str]
    server: Counter[int]
    client_stats: dict[str, dict[str, Any]]
    commits: int
    versions_seen: dict[str, int]
    max_threads: int
    bound: int
    bound_why: str
    max_threads_by_kind: Counter[str]
    rss_start: int
    rss_end: int
    rss_timeline: list[tuple[float, int]]
    errors: list[str]

    def lines(self) -> list[str]:
        mib = 1024 * 1024
        growth = (self.rss_end - self.rss_start) / self.rss_start
        server_total = sum(self.server.values())
        by_status = ", ".join(f"{s}: {n:,}" for s, n in sorted(self.server.items()))
        kinds = ", ".join(f"{k} {n}" for k, n in self.max_threads_by_kind.most_common())
        return [
            f"soak of {self.seconds:.0f} s: {SYNC_THREADS} threads (PromptClient) and "
            f"{ASYNC_TASKS} tasks (AsyncPromptClient), TTL {CACHE_TTL} s",
            f"client calls: {sum(self.calls.values()):,} "
            f"({', '.join(f'{k} {n:,}' for k, n in self.calls.most_common())})",
            f"requests the server answered: {server_total:,} ({by_status})",
            *(
                f"{kind} client: "
                + ", ".join(
                    f"{key} {stats.get(key, 0):,}"
                    for key in ("hits", "stale_hits", "misses", "revalidations", "errors")
                )
                for kind, stats in self.client_stats.items()
            ),
            f"commits landed: {self.commits}; versions seen per prompt: "
            f"min {min(self.versions_seen.values())}, max {max(self.versions_seen.values())}",
            f"threads: max {self.max_threads} (bound {self.bound} = {self.bound_why})",
            f"threads at the max, by kind: {kinds}",
            f"RSS: {self.rss_start / mib:.1f} MiB after warm-up, {self.rss_end / mib:.1f} MiB "
            f"at the end ({growth:+.1%})",
            "RSS over the run: "
            + ", ".join(f"{at:.1f} s {rss / mib:.1f}" for at, rss in self.rss_timeline),
            f"errors: {len(self.errors)}",
            *(f"  {error}" for error in self.errors[:20]),
        ]


@pytest.fixture
def soak_repo(tmp_path: Path) -> tuple[PromptRepo, Committed]:
    repo = PromptRepo(tmp_path / "prompts")
    committed = Committed()
    seed_repository(repo, committed)
    return repo, committed


@pytest.fixture
def soak_server(soak_repo: tuple[PromptRepo, Committed]) -> Iterator[tuple[str, str, CountingApp]]:
    """The server (url, key, request counter), polling every 0.1 s, no rate limit."""
    repo, _ = soak_repo
    key = generate_key(test=True)
    settings = ServerSettings(
        repo=repo.path,
        keyring=KeyRing([KeyRecord.for_key(key)]),
        rate_limit=0,
        poll_interval=0.1,
        # One key stands for every caller here (232 at once): its render queue holds them
        # all, as `rate_limit=0` lifts its request limit. The caps have their own tests.
        render=RenderCapacity(queue_per_key=1024),
    )
    counting = CountingApp(create_app(settings))
    with BackgroundServer(counting) as background:
        yield background.url, key, counting


def _run_async_clients(
    url: str,
    key: str,
    ids: dict[str, str],
    checker: Checker,
    record: Record,
    deadline: float,
    stats: dict[str, Any],
) -> Callable[[], None]:
    """Start the async tasks on an event loop of their own thread; returns a join. The
    client's `cache_stats()` land in `stats` before it closes."""

    async def main() -> None:
        async with AsyncPromptClient(url, key, cache_ttl=CACHE_TTL) as client:
            tasks = [
                asyncio.create_task(
                    async_worker(client, Mix(10_000 + n, ids), checker, record, deadline)
                )
                for n in range(ASYNC_TASKS)
            ]
            await asyncio.gather(*tasks)
            stats.update(client.cache_stats())

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            record.error(f"async client loop: {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=run, name="soak-async-loop", daemon=True)
    thread.start()
    return lambda: thread.join(60)


def _wait_until_served(url: str, key: str, ids: dict[str, str], committed: Committed) -> bool:
    """Whether the server serves every prompt's last committed body within 5 s."""
    with PromptClient(url, key, cache_ttl=0) as probe:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            served = {name: probe.get(prompt_id).body for name, prompt_id in ids.items()}
            if all(_bodies(n, committed.versions[n])[0] == body for n, body in served.items()):
                return True
            time.sleep(0.05)
    return False


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS * 3 + 120)
def test_mixed_load_while_commits_land(
    soak_repo: tuple[PromptRepo, Committed],
    soak_server: tuple[str, str, CountingApp],
) -> None:
    repo, committed = soak_repo
    url, key, counting = soak_server
    ids = {name: prompt_uuid("o", "a", name, "development") for name in PLAIN + INCLUDING}
    record = Record()
    logs = LogRecorder(record)
    logging.getLogger("promptory").addHandler(logs)
    baseline = threading.active_count() - 2  # less the server's two: counted in the bound
    bound, bound_why = thread_bound(baseline)
    stop = threading.Event()
    started = time.monotonic()
    deadline = started + SOAK_SECONDS
    sampler = Sampler(started, stop)
    committer = Committer(repo, committed, stop)
    sync_checker, async_checker = Checker(committed, record), Checker(committed, record)
    sync_stats: dict[str, Any] = {}
    async_stats: dict[str, Any] = {}
    try:
        sampler.start()
        committer.start()
        with PromptClient(url, key, cache_ttl=CACHE_TTL) as client:
            join_async = _run_async_clients(
                url, key, ids, async_checker, record, deadline, async_stats
            )
            workers = [
                threading.Thread(
                    target=sync_worker,
                    args=(client, Mix(n, ids), sync_checker, record, deadline),
                    name=f"soak-sync-{n}",
                    daemon=True,
                )
                for n in range(SYNC_THREADS)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(max(0.0, deadline - time.monotonic()) + 60)
            join_async()
            sync_stats.update(client.cache_stats())
        stop.set()
        committer.join(30)
        sampler.join(5)
        ended = time.monotonic() - started
        if not _wait_until_served(url, key, ids, committed):
            record.error("the server did not serve the last commit within 5 s of it")
    finally:
        stop.set()
        logging.getLogger("promptory").removeHandler(logs)
    leftover = [
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith(("promptory-prefetch", "promptory-revalidate", "soak-"))
    ]

    warm_up = max(1.0, 0.2 * SOAK_SECONDS)
    samples = sampler.samples
    after_warm_up = [s.rss for s in samples if warm_up <= s.at <= warm_up + 1.0]
    at_the_end = [s.rss for s in samples if s.at >= min(SOAK_SECONDS, ended) - 1.0]
    peak = max(samples, key=lambda s: s.threads)
    versions_seen = {
        name: len(sync_checker.seen[name] | async_checker.seen[name]) for name in PLAIN + INCLUDING
    }
    summary = Summary(
        seconds=ended,
        calls=record.calls,
        server=counting.statuses,
        client_stats={"sync": sync_stats, "async": async_stats},
        commits=len(committer.shas),
        versions_seen=versions_seen,
        max_threads=peak.threads,
        bound=bound,
        bound_why=bound_why,
        max_threads_by_kind=peak.names,
        rss_start=int(statistics.median(after_warm_up)),
        rss_end=int(statistics.median(at_the_end)),
        rss_timeline=[(sample.at, sample.rss) for sample in samples[:: max(1, len(samples) // 10)]],
        errors=record.errors,
    )
    SUMMARIES.append(summary.lines())
    print("\n" + "\n".join(summary.lines()))

    assert committer.error is None, committer.error
    assert record.errors == [], record.errors[:20]
    assert not any(status >= 500 for status in counting.statuses), counting.statuses
    for stats in (sync_stats, async_stats):
        assert stats["revalidations"] > 0, stats
        assert stats["revalidation_failures"] == stats["stale_served_on_error"] == 0, stats
    assert len(committer.shas) >= SOAK_SECONDS / COMMIT_EVERY / 2
    assert min(versions_seen.values()) >= 2, "some prompt was never seen to change"
    assert peak.threads <= bound
    assert leftover == []
    assert summary.rss_end < summary.rss_start * (1 + RSS_GROWTH)
