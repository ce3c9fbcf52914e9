"""Figure 3: a cold fetch through the SDK against a bare `httpx.Client.get`.

Ours: ``client.get_by_name("myorg", "myapp", "meditation_script_relax")`` on a
`PromptClient` with ``cache_max_size=0``, so every call is a full fetch: the request, the
JSON parse, the validation and the freezing of the answer. Baseline: ``httpx.Client.get``
of the same URL with the same headers, reading ``.content``. Both keep their connection
alive, to the same server — our server in a child process, so its work does not compete
with the client for this process's GIL. Target: at most 1.25x.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from time import perf_counter_ns

import httpx

from promptory import PromptClient
from promptory._wire import user_agent

from .measure import Figure, calibrate, interleave, per_op
from .servers import process_server
from .session import Session

__all__ = ["run"]

ORG, APP, NAME = "myorg", "myapp", "meditation_script_relax"
PATH = f"/api/v1/prompts/by-name/{ORG}/{APP}/{NAME}"


def run(session: Session) -> list[Figure]:
    """Figure 3."""
    with process_server(session.small_repo(), session.api_key) as server:
        headers = {
            "Authorization": f"Bearer {server.api_key}",
            "User-Agent": user_agent(),
            "Accept": "application/json",
        }
        url = server.url + PATH
        with (
            PromptClient(server.url, server.api_key, cache_max_size=0) as client,
            httpx.Client(headers=headers) as bare,
        ):
            prompt = client.get_by_name(ORG, APP, NAME)
            response = bare.get(url)
            assert response.status_code == 200
            assert response.json()["id"] == prompt.id

            def ours_run(n: int) -> int:
                get = client.get_by_name
                started = perf_counter_ns()
                for _ in repeat(None, n):
                    get(ORG, APP, NAME)
                return perf_counter_ns() - started

            def base_run(n: int) -> int:
                get: Callable[[str], httpx.Response] = bare.get
                started = perf_counter_ns()
                for _ in repeat(None, n):
                    get(url).content  # noqa: B018 - reading the body is the point
                return perf_counter_ns() - started

            session.log("cold: SDK full fetch vs bare httpx.Client.get")
            n = calibrate(base_run)
            ours, base = interleave(per_op(ours_run, n), per_op(base_run, n))
            stats = client.cache_stats()
    assert stats["hits"] == 0, stats
    assert stats["total_entries"] == 0, stats
    return [
        Figure.from_samples(
            "cold.fetch",
            "cold fetch through the SDK (cache_max_size=0)",
            "µs/op",
            [v / 1000 for v in ours],
            [v / 1000 for v in base],
            baseline_label="httpx.Client.get of the same URL and headers, .content read",
            op="<=",
            target=1.25,
            notes=[
                f"{len(response.content):,} B answer; {n:,} requests per sample, keep-alive; "
                "server in a child process"
            ],
            extra={"requests_per_sample": n, "answer_bytes": len(response.content)},
        )
    ]
