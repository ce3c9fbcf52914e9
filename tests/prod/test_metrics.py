"""``GET /metrics``: Prometheus text format, ``promptory_*`` names, readable from loopback
and by unscoped keys (or by anyone with ``metrics_public``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from promptory.server.app import ServerSettings, create_app
from promptory.server.keys import KeyRecord, KeyRing, generate_key
from promptory.server.renderpool import RenderCapacity

from .conftest import Follower, Remote

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_and_status(server: Any) -> None:
    with server.client() as http:
        first = http.get(f"/api/v1/prompts/{MEDITATION_ID}")
        http.get(
            f"/api/v1/prompts/{MEDITATION_ID}", headers={"If-None-Match": first.headers["etag"]}
        )
        http.get("/api/v1/prompts/no-such-id")
        http.post(f"/api/v1/prompts/{MEDITATION_ID}/render", json={"variables": {}})
        scrape = http.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    text = scrape.text
    route = "/api/v1/prompts/{id}"
    assert value(text, "promptory_requests_total", route=route, status="200") == 1
    assert value(text, "promptory_requests_total", route=route, status="304") == 1
    assert value(text, "promptory_requests_total", route=route, status="404") == 1
    assert value(text, "promptory_not_modified_total") == 1
    assert value(text, "promptory_render_seconds_count") == 1
    assert value(text, "promptory_served_commit_info", commit=server.repo.head) == 1
    assert value(text, "promptory_prompt_files") >= 5


def test_skipped_files_and_rate_limited_requests_are_counted(
    start_server: Any, prompt_repo: Any
) -> None:
    prompt_repo.symlink("myorg/myapp/link.md", "greeting.md")
    prompt_repo.commit("a symlink, which is never served")
    server = start_server(prompt_repo, rate_limit=2)
    with server.client() as http:
        statuses = [http.get(f"/api/v1/prompts/{MEDITATION_ID}").status_code for _ in range(3)]
        text = http.get("/metrics").text
    assert statuses == [200, 200, 429]
    assert value(text, "promptory_rate_limited_total") == 1
    assert value(text, "promptory_skipped_files") == 1


def test_rate_limited_total_says_it_counts_every_429_and_counts_a_render_cap_refusal(
    start_server: Any, prompt_repo: Any
) -> None:
    slow = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x"
    slow_id = "00000000-0000-4000-8000-00000000007a"
    prompt_repo.write_prompt("myorg", "myapp", "slow", slow, id=slow_id)
    prompt_repo.commit("a render at its time limit")
    capacity = RenderCapacity(workers=2, per_key=1, queue_per_key=0, processes=False)
    server = start_server(prompt_repo, render=capacity)
    with server.client() as http, ThreadPoolExecutor(4) as pool:
        path = f"/api/v1/prompts/{slow_id}/render"
        answers = list(pool.map(lambda _: http.post(path, json={"variables": {}}), range(4)))
        text = http.get("/metrics").text
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) == {400, 429}, statuses  # the render cap refused some
    assert value(text, "promptory_rate_limited_total") == statuses.count(429)
    help_line = next(
        line for line in text.splitlines() if line.startswith("# HELP promptory_rate_limited_total")
    )
    assert "render cap" in help_line and "TOO_MANY_WATCHERS" in help_line


def test_fetch_and_index_times_and_the_time_since_the_last_fetch(
    remote: Remote, follow: Callable[..., Follower]
) -> None:
    server = follow(remote)
    server.wait_for_commit(remote.pushed[-1])
    with server.client() as http:
        text = http.get("/metrics").text
    assert value(text, "promptory_fetch_seconds_count") >= 1
    assert value(text, "promptory_index_seconds_count") >= 1
    assert 0 <= value(text, "promptory_seconds_since_last_fetch") < 60
    assert value(text, "promptory_fetch_failures_total") == 0


def test_a_server_that_follows_nothing_reports_no_fetch(server: Any) -> None:
    with server.client() as http:
        assert value(http.get("/metrics").text, "promptory_seconds_since_last_fetch") == -1


def scrape_from_afar(app: Any, key: str | None) -> httpx.Response:
    """A scrape as a client at a non-loopback address would send it (in process: the
    address is only the ASGI scope's label, no packet leaves the machine)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 40000))
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://promptory") as http:
            return await http.get("/metrics", headers=headers)

    return asyncio.run(go())


@pytest.fixture
def keys() -> dict[str, str]:
    return {"unscoped": generate_key(test=True), "scoped": generate_key(test=True)}


def make_app(prompt_repo: Any, keys: dict[str, str], **settings: Any) -> Any:
    keyring = KeyRing(
        [KeyRecord.for_key(keys["unscoped"]), KeyRecord.for_key(keys["scoped"], scope="myorg")]
    )
    return create_app(ServerSettings(repo=prompt_repo.path, keyring=keyring, **settings))


def test_a_remote_client_needs_an_unscoped_key(prompt_repo: Any, keys: dict[str, str]) -> None:
    app = make_app(prompt_repo, keys)
    assert scrape_from_afar(app, None).status_code == 401
    assert scrape_from_afar(app, keys["scoped"]).status_code == 403
    assert scrape_from_afar(app, keys["unscoped"]).status_code == 200


def test_metrics_public_lets_anyone_read(prompt_repo: Any, keys: dict[str, str]) -> None:
    app = make_app(prompt_repo, keys, metrics_public=True)
    assert scrape_from_afar(app, None).status_code == 200
