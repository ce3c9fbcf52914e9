"""The web UI's heaviest reading page: the prompts of an app of 1,000 prompts.

* Time: ``GET /ui/apps/acme/assistant`` for a signed-in session, served in-process through
  the ASGI app (no sockets, so what is timed is the server's work), against
  ``GET /api/v1/prompts?org=acme&app=assistant`` — the same prompts as JSON bytes made
  once per prompt — taken the same way, interleaved. Target: at most 4x the JSON list, and
  under the 50 ms budget (the second figure divides by that budget: at most 1).
* Weight: what a browser downloads for the page (the HTML compressed, as browsers ask for
  it, and its stylesheets and script) against the 150 KB budget: at most 1.

The prompts have 34-character names, two tags and a 1 KB body: a longer row than most.
"""

from __future__ import annotations

import asyncio
import re
from time import perf_counter_ns

import httpx

from promptory.server.app import ServerSettings, create_app
from promptory.server.keys import KeyRecord, KeyRing, generate_key

from .measure import Figure
from .repos import create_repo, prompt_text
from .session import Session

__all__ = ["run"]

PROMPTS = 1000
ROUNDS = 15
PER_SAMPLE = 5
BUDGET_MS = 50.0
BUDGET_BYTES = 150 * 1024
PAGE = "/ui/apps/acme/assistant"
LIST = "/api/v1/prompts?org=acme&app=assistant"


def _files() -> dict[str, bytes]:
    files = {}
    for index in range(PROMPTS):
        front = {
            "version": f"1.{index % 10}.{index % 3}",
            "environment": ("development", "staging", "production")[index % 3],
            "tags": ["support", f"team-{index % 7}"],
        }
        body = f"You help {{{{ customer.name }}}} with order {index}.\n" * 20
        files[f"acme/assistant/prompt_{index:04d}_customer_support_reply.md"] = prompt_text(
            front, body
        )
    return files


async def _measure(app: object, key: str) -> tuple[list[float], list[float], int, int]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        form = await client.get("/ui/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        signed_in = await client.post(
            "/ui/login", data={"api_key": key, "csrf_token": token.group(1)}
        )
        assert signed_in.status_code == 303, signed_in.text
        headers = {"Authorization": f"Bearer {key}"}

        async def sample(path: str, extra: dict[str, str]) -> float:
            started = perf_counter_ns()
            for _ in range(PER_SAMPLE):
                answer = await client.get(path, headers=extra)
                assert answer.status_code == 200
            return (perf_counter_ns() - started) / PER_SAMPLE / 1e6

        ours: list[float] = []
        baseline: list[float] = []
        await sample(PAGE, {})  # prepares every prompt (parse, JSON) once
        await sample(LIST, headers)
        for index in range(ROUNDS):
            if index % 2 == 0:
                ours.append(await sample(PAGE, {}))
                baseline.append(await sample(LIST, headers))
            else:
                baseline.append(await sample(LIST, headers))
                ours.append(await sample(PAGE, {}))
        gzip = {"Accept-Encoding": "gzip"}
        page = await client.get(PAGE, headers=gzip)
        assert page.text.count("<tr><td>") == PROMPTS
        weight = page.num_bytes_downloaded
        for asset in re.findall(r'(?:href|src)="(/ui/static/[^"?]+)', page.text):
            weight += (await client.get(asset, headers=gzip)).num_bytes_downloaded
        return ours, baseline, weight, len(page.content)


def run(session: Session) -> list[Figure]:
    """The app page's time and weight."""
    path = session.root / "ui.git"
    session.log(f"ui: a repository of {PROMPTS:,} prompts in one app")
    create_repo(path, _files())
    key = generate_key(test=True)
    app = create_app(
        ServerSettings(
            repo=str(path),
            keyring=KeyRing([KeyRecord.for_key(key)]),
            rate_limit=0,
            prepare_in_background=False,
        )
    )
    session.log("ui: the app page vs the JSON list of the same prompts, in-process")
    ours, baseline, weight, raw = asyncio.run(_measure(app, key))
    page_ms = Figure.from_samples(
        "ui.app_page",
        f"UI page of an app of {PROMPTS:,} prompts vs its JSON list",
        "ms",
        ours,
        baseline,
        baseline_label="GET /api/v1/prompts of the same app (prepared JSON)",
        op="<=",
        target=4.0,
        notes=[f"{PER_SAMPLE} requests a sample, in-process ASGI, signed-in session"],
    )
    budget = Figure(
        name="ui.app_page_budget",
        title=f"UI page of an app of {PROMPTS:,} prompts vs the 50 ms budget",
        unit="ms",
        ours=page_ms.ours,
        baseline=BUDGET_MS,
        baseline_label="50 ms (issue 12)",
        op="<=",
        target=1.0,
        ours_samples=ours,
    )
    size = Figure(
        name="ui.app_page_weight",
        title=f"UI page of an app of {PROMPTS:,} prompts: bytes downloaded vs 150 KB",
        unit="bytes",
        ours=float(weight),
        baseline=float(BUDGET_BYTES),
        baseline_label="150 KB (issue 12)",
        op="<=",
        target=1.0,
        notes=[f"HTML gzip + CSS + JS; the HTML is {raw:,} bytes uncompressed"],
        extra={"html_bytes": raw},
    )
    return [page_ms, budget, size]
