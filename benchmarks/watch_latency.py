"""``python -m benchmarks.watch_latency``: how long from a commit to a client's answer, with
``watch=True`` against the TTL path, measured in the same run.

A real server (uvicorn in a thread, polling its repository every 0.05 s) serves a small
repository. Each round commits a new body for one prompt, then each client is asked for
that prompt every millisecond until it answers the new body; the time from the commit to
that answer is the latency. Clients:

* ``watch``: ``cache_ttl=300, watch=True``: the change stream marks the entry, one
  background revalidation fetches it;
* ``ttl=2``: a short TTL without watch (the default TTL of 300 s would take minutes): the
  entry turns stale, the next call starts a revalidation, the call after it sees the body.

Every answer comes from the client's memory: callers never wait on the network.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from promptory import PromptClient
from promptory.server.app import ServerSettings, create_app
from promptory.server.keys import KeyRecord, KeyRing, generate_key
from promptory.server.runner import BackgroundServer

from .repos import commit_file, prompt_text, small_repo

ROUNDS = 10
TTL = 2.0
PATH = "myorg/myapp/latency_probe.md"


def _seen(
    clients: dict[str, PromptClient], body: str, since: float, limit: float = 30.0
) -> dict[str, float]:
    """Ask every client in turn, every millisecond, until each answers `body`; the time
    from `since` at which each first did."""
    seen: dict[str, float] = {}
    while len(seen) < len(clients):
        for name, client in clients.items():
            if name not in seen and (
                client.get_by_name("myorg", "myapp", "latency_probe").body == body
            ):
                seen[name] = time.monotonic() - since
        if time.monotonic() - since > limit:
            raise RuntimeError(f"not every client saw the commit within {limit} s")
        time.sleep(0.001)
    return seen


def main() -> int:
    """Print the median and worst commit-to-client latency of each path and their ratio."""
    key = generate_key(test=True)
    with tempfile.TemporaryDirectory() as folder:
        repo = small_repo(Path(folder) / "repo")
        commit_file(repo, PATH, prompt_text({"version": "1.0.0"}, "round 0\n"), "probe")
        settings = ServerSettings(
            repo=Path(folder) / "repo",
            keyring=KeyRing([KeyRecord.for_key(key)]),
            poll_interval=0.05,
            rate_limit=0,
        )
        with (
            BackgroundServer(create_app(settings)) as server,
            PromptClient(server.url, key, cache_ttl=300, watch=True) as watching,
            PromptClient(server.url, key, cache_ttl=TTL) as ttl,
        ):
            for client in (watching, ttl):
                client.get_by_name("myorg", "myapp", "latency_probe")
            assert watching._watch is not None
            deadline = time.monotonic() + 10
            while not watching._watch.connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            rng = random.Random(11)
            clients = {"watch": watching, f"ttl={TTL:g}": ttl}
            results: dict[str, list[float]] = {name: [] for name in clients}
            for number in range(1, ROUNDS + 1):
                # Commits land at random points of the TTL cycle, as they do in life.
                time.sleep(rng.uniform(0, TTL))
                body = f"round {number}\n"
                started = time.monotonic()
                commit_file(repo, PATH, prompt_text({"version": "1.0.0"}, body), f"round {number}")
                for name, latency in _seen(clients, body, started).items():
                    results[name].append(latency)
            server.app.state.watch.close_threadsafe()
    for name, values in results.items():
        print(
            f"{name:>8}: commit-to-client median {statistics.median(values):.3f} s, "
            f"worst {max(values):.3f} s ({ROUNDS} commits)"
        )
    watch, baseline = (statistics.median(v) for v in results.values())
    print(f"watch vs ttl={TTL:g}: {watch / baseline:.2f}x the latency")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
