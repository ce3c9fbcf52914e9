"""Figure 8: the memory of 1,000 cached prompts with 4 KB bodies.

Our server (in a child process, so its memory is not counted) serves 1,000 distinct prompts
with realistic front matter and distinct 4 KB bodies (`bodies.prose_body`: mostly prose, so
the server's first answer for each, which compiles the body, is quick; what a body does
makes no difference to what caching it costs).

* Ours: a new `PromptClient` (its connection already open, its cache empty) fetches all
  1,000 by name, through the real client path: request, parse, validation, freezing, cache.
  Counted: what `tracemalloc` sees still allocated afterwards, after a collection.
* Baseline: the same 1,000 JSON documents (the bytes the server sent, fetched beforehand)
  parsed with `json.loads` and kept in a list.

Rounds interleaved; each round starts from nothing (a new client, a new list).
Target: at most 2x.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import httpx

from promptory import PromptClient

from .bodies import SUPPORT_FRONT_MATTER, prose_body
from .measure import Figure, interleave
from .repos import create_repo, prompt_text
from .servers import LocalServer, process_server
from .session import Session

__all__ = ["run"]

PROMPTS = 1_000
ROUNDS = 3
ORG = "myorg"
APPS = ("support", "sales")


def _names() -> list[tuple[str, str, str]]:
    return [(ORG, APPS[i % 2], f"assistant_{i:04d}") for i in range(PROMPTS)]


def _retained(action: Callable[[], Any]) -> float:
    """Bytes still allocated after `action()` (whose result is kept until measured)."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    kept = action()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    del kept
    return float(after - before)


def _fill(server: LocalServer, names: list[tuple[str, str, str]]) -> Callable[[], Any]:
    def action() -> Any:
        client = PromptClient(server.url, server.api_key, cache_max_size=PROMPTS)
        # Open the connection and build the client's own state outside the count.
        client.get_by_name(*names[0])
        client.cache_invalidate_all()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for org, app, name in names:
            client.get_by_name(org, app, name)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        assert client.cache_stats()["total_entries"] == PROMPTS
        client.close()
        return after - before

    return action


def run(session: Session) -> list[Figure]:
    """Figure 8."""
    session.log(f"memory: a repository of {PROMPTS:,} prompts with 4 KB bodies")
    files = {}
    for index, (_, app, name) in enumerate(_names()):
        files[f"{ORG}/{app}/{name}.md"] = prompt_text(SUPPORT_FRONT_MATTER, prose_body(index))
    path = session.root / "memory.git"
    create_repo(path, files)
    names = _names()
    with process_server(path, session.api_key) as server:
        with httpx.Client(base_url=server.url, headers=server.headers()) as http:
            documents = []
            for org, app, name in names:
                response = http.get(f"/api/v1/prompts/by-name/{org}/{app}/{name}")
                assert response.status_code == 200
                documents.append(response.content)
        body_bytes = sum(len(json.loads(doc)["body"].encode()) for doc in documents)
        fill = _fill(server, names)
        session.log(f"memory: {ROUNDS} rounds of a client cache vs json.loads, tracemalloc")
        tracemalloc.start()
        try:
            ours, base = interleave(
                lambda: float(fill()),
                lambda: _retained(lambda: [json.loads(doc) for doc in documents]),
                rounds=ROUNDS,
                warmup=0,
            )
        finally:
            tracemalloc.stop()
    return [
        Figure.from_samples(
            "memory.cache",
            f"{PROMPTS:,} cached prompts with 4 KB bodies",
            "bytes",
            ours,
            base,
            baseline_label="the same JSON documents parsed with json.loads",
            op="<=",
            target=2.0,
            notes=[
                f"{sum(map(len, documents)):,} B of JSON, {body_bytes:,} B of bodies; "
                "tracemalloc, after gc.collect(); cache filled through a real client"
            ],
            extra={"json_bytes": sum(map(len, documents)), "body_bytes": body_bytes},
        )
    ]
