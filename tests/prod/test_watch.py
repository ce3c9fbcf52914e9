"""``GET /api/v1/watch``: one Server-Sent Event per served commit, naming the prompts in
the key's scope whose answers changed; heartbeats; ``Last-Event-ID`` resumes; bounded."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from promptory.server.keys import KeyRecord, generate_key

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"


@contextmanager
def watching(
    url: str, key: str, last_event_id: str | None = None
) -> Iterator[Iterator[ServerSentEvent]]:
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    with (
        httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(10.0)) as http,
        connect_sse(http, "GET", "/api/v1/watch") as source,
    ):
        assert source.response.status_code == 200, source.response.read()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        yield source.iter_sse()


def data(event: ServerSentEvent) -> dict[str, Any]:
    return json.loads(event.data)  # type: ignore[no-any-return]


def test_a_stream_opens_with_the_commit_served(server: Any) -> None:
    with watching(server.url, server.api_key) as events:
        hello = next(events)
    assert hello.event == "hello"
    assert hello.id == server.repo.head
    assert data(hello) == {"commit": server.repo.head}


def test_each_commit_names_the_prompts_whose_answers_changed(server: Any) -> None:
    repo = server.repo
    with watching(server.url, server.api_key) as events:
        assert next(events).event == "hello"
        repo.write_prompt(
            "myorg", "myapp", "meditation_script_relax", "changed\n", id=MEDITATION_ID
        )
        repo.write_prompt("myorg", "myapp", "brand_new", "new\n")
        repo.remove("myorg/myapp/safety_preamble.md")
        sha = repo.commit("change one, add one, remove one")
        event = next(events)
    assert event.event == "commit"
    assert event.id == sha
    changed = {p["name"]: p for p in data(event)["prompts"]}
    # coach_checkin includes safety_preamble, but its own answer (the JSON) is unchanged.
    assert set(changed) == {"meditation_script_relax", "brand_new", "safety_preamble"}
    assert changed["meditation_script_relax"]["id"] == MEDITATION_ID
    assert changed["meditation_script_relax"]["org"] == "myorg"
    assert changed["meditation_script_relax"]["app"] == "myapp"
    assert changed["safety_preamble"]["etag"] is None
    with server.client() as http:
        etag = http.get(f"/api/v1/prompts/{MEDITATION_ID}").headers["etag"]
    assert changed["meditation_script_relax"]["etag"] == etag


def test_a_scoped_key_sees_only_its_scope(start_server: Any, prompt_repo: Any) -> None:
    scoped = generate_key(test=True)
    server = start_server(prompt_repo, keys=[KeyRecord.for_key(scoped, scope="futureself")])
    with watching(server.url, scoped) as events:
        assert next(events).event == "hello"
        server.repo.write_prompt("myorg", "myapp", "outside", "not yours\n")
        server.repo.write_prompt("futureself", "meditate", "inside", "yours\n")
        sha = server.repo.commit("one in scope, one out")
        event = next(events)
    assert event.id == sha
    assert [p["name"] for p in data(event)["prompts"]] == ["inside"]


def test_last_event_id_resumes_with_the_missed_commits(server: Any) -> None:
    with watching(server.url, server.api_key) as events:
        first = next(events).id
    shas = []
    for number in range(3):
        server.repo.write_prompt("myorg", "myapp", f"missed{number}", "x\n")
        shas.append(server.repo.commit(f"missed {number}"))
        server.wait_for_commit(shas[-1])
    with watching(server.url, server.api_key, last_event_id=first) as events:
        resumed = [next(events) for _ in range(3)]
    assert [e.id for e in resumed] == shas
    assert [p["name"] for e in resumed for p in data(e)["prompts"]] == [
        "missed0",
        "missed1",
        "missed2",
    ]


def test_an_unknown_last_event_id_gets_a_reset(server: Any) -> None:
    with watching(server.url, server.api_key, last_event_id="f" * 40) as events:
        event = next(events)
    assert event.event == "reset"
    assert data(event) == {"commit": server.repo.head}


def test_the_current_commit_as_last_event_id_waits_quietly_for_the_next(server: Any) -> None:
    with watching(server.url, server.api_key, last_event_id=server.repo.head) as events:
        server.repo.write_prompt("myorg", "myapp", "next_one", "x\n")
        sha = server.repo.commit("next")
        event = next(events)
    assert (event.event, event.id) == ("commit", sha)


def test_heartbeats_keep_the_stream_alive(start_server: Any, prompt_repo: Any) -> None:
    server = start_server(prompt_repo, watch_heartbeat=0.2)
    headers = {"Authorization": f"Bearer {server.api_key}"}
    lines = []
    with (
        httpx.Client(base_url=server.url, headers=headers, timeout=10.0) as http,
        http.stream("GET", "/api/v1/watch") as response,
    ):
        for line in response.iter_lines():
            lines.append(line)
            if sum(1 for seen in lines if seen.startswith(":")) >= 2:
                break
    assert "event: hello" in lines[:3]


def test_streams_are_bounded_per_key_and_in_all(start_server: Any, prompt_repo: Any) -> None:
    other = generate_key(test=True)
    server = start_server(
        prompt_repo,
        keys=[KeyRecord.for_key(other)],
        watch_max_per_key=2,
        watch_max_total=3,
    )
    with watching(server.url, server.api_key), watching(server.url, server.api_key):
        with server.client() as http:
            refused = http.get("/api/v1/watch")
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "TOO_MANY_WATCHERS"
            assert "per key" in refused.json()["error"]["message"]
        with watching(server.url, other):
            with server.client(other) as http:
                refused = http.get("/api/v1/watch")
                assert refused.status_code == 429
                assert "its limit" in refused.json()["error"]["message"]
            with server.client() as http:
                assert "promptory_watch_subscribers 3.0" in http.get("/metrics").text
    watch = server.background.app.state.watch
    deadline = time.monotonic() + 10
    while watch.subscribers and time.monotonic() < deadline:
        time.sleep(0.02)
    assert watch.subscribers == 0


def test_a_stream_needs_a_key(server: Any) -> None:
    assert httpx.get(f"{server.url}/api/v1/watch").status_code == 401


@pytest.mark.parametrize("burst", [100])
def test_a_stream_that_falls_behind_gets_a_reset(server: Any, burst: int) -> None:
    from promptory.server.watch import QUEUE_SIZE

    assert burst > QUEUE_SIZE
    hub = server.background.app.state.watch
    loop_events: list[str] = []
    with watching(server.url, server.api_key) as events:
        assert next(events).event == "hello"
        store = server.store
        before = store.snapshot
        # Announce more commits than a stream buffers, faster than it reads.
        for _ in range(burst):
            hub.served(before, before)
        for event in events:
            loop_events.append(event.event)
            if event.event == "reset":
                break
    assert "reset" in loop_events


def wait_for(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.02)


def test_head_and_early_leavers_give_their_slot_back(start_server: Any, prompt_repo: Any) -> None:
    server = start_server(prompt_repo, watch_max_per_key=3)
    hub = server.background.app.state.watch
    with server.client() as http:
        for _ in range(5):
            assert http.head("/api/v1/watch").status_code == 200
        # A client that asks and leaves before reading anything.
        for _ in range(5):
            with http.stream("GET", "/api/v1/watch") as response:
                assert response.status_code == 200
    wait_for(lambda: hub.subscribers == 0, "every slot given back")
    with watching(server.url, server.api_key) as events:
        assert next(events).event == "hello"


def test_revoking_a_key_ends_its_streams(
    start_server: Any, prompt_repo: Any, tmp_path: Any
) -> None:
    from promptory.server.app import ServerSettings, create_app
    from promptory.server.keys import KeyRing, add_key
    from promptory.server.runner import BackgroundServer

    keys_file = tmp_path / "keys.json"
    key, record = add_key(keys_file)
    keyring = KeyRing.from_sources(keys_file=keys_file, environ={}, check_interval=0.1)
    app = create_app(ServerSettings(repo=prompt_repo.path, keyring=keyring, watch_heartbeat=60))
    with BackgroundServer(app) as background:
        headers = {"Authorization": f"Bearer {key}"}
        with (
            httpx.Client(base_url=background.url, headers=headers, timeout=20.0) as http,
            connect_sse(http, "GET", "/api/v1/watch") as source,
        ):
            events = source.iter_sse()
            assert next(events).event == "hello"
            started = time.monotonic()
            keyring.revoke(record.id)
            assert list(events) == []  # the stream ends (a read timeout fails the test)
            assert time.monotonic() - started < 15
        assert app.state.watch.subscribers == 0


def test_closing_the_hub_ends_a_stream_that_fell_behind(server: Any) -> None:
    from promptory.server.watch import QUEUE_SIZE, CommitEvent

    hub = server.background.app.state.watch
    done = []

    def flood_then_close() -> None:
        # On the loop, in one go: the stream cannot read between these.
        for number in range(QUEUE_SIZE * 2):
            hub._deliver(CommitEvent(f"{number:040x}", ()))
        hub.close()
        done.append(True)

    headers = {"Authorization": f"Bearer {server.api_key}"}
    with (
        httpx.Client(base_url=server.url, headers=headers, timeout=20.0) as http,
        connect_sse(http, "GET", "/api/v1/watch") as source,
    ):
        events = source.iter_sse()
        assert next(events).event == "hello"
        hub._loop.call_soon_threadsafe(flood_then_close)
        wait_for(lambda: bool(done), "the flood")
        seen = [event.event for event in events]  # ends; a read timeout fails the test
    assert "commit" not in seen
