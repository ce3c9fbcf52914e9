"""POST /api/v1/prompts/{id}/render: variables, includes, cycles, limits, bad bodies."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from promptory.prompt import PROMPT_JSON_KEYS
from support.servers import RunningServer

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"
BY_NAME = "/api/v1/prompts/by-name"


@pytest.fixture
def client(shared_server: RunningServer) -> Iterator[httpx.Client]:
    with shared_server.client() as client:
        yield client


def prompt_id(client: httpx.Client, org: str, app: str, name: str, **params: str) -> str:
    response = client.get(f"{BY_NAME}/{org}/{app}/{name}", params=params)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def render(client: httpx.Client, pid: str, **request: object) -> httpx.Response:
    return client.post(f"/api/v1/prompts/{pid}/render", **request)  # type: ignore[arg-type]


def test_render_answers_id_name_text_meta_model_and_messages(client: httpx.Client) -> None:
    variables = {
        "user": {"display_name": "Alice", "elevenlabs_voice_id": "abc123"},
        "vision": {"identity_statement": "I am confident", "deep_why": "my kids"},
        "duration_minutes": 12,
    }
    response = render(client, MEDITATION_ID, json={"variables": variables})
    assert response.status_code == 200
    data = response.json()
    assert list(data) == ["id", "name", "rendered_body", "meta", "model", "messages"]
    assert data["id"] == MEDITATION_ID
    assert data["name"] == "meditation_script_relax"
    assert "about 12 minutes for Alice" in data["rendered_body"]
    assert "voice abc123" in data["rendered_body"]
    assert '"I am confident"' in data["rendered_body"]
    assert "my kids" in data["rendered_body"]
    assert tuple(data["meta"]) == tuple(k for k in PROMPT_JSON_KEYS if k != "body")
    assert data["model"] == data["meta"]["model"]
    assert data["model"]["max_tokens"] == 4000


def test_render_matches_a_local_render_of_the_same_prompt(client: httpx.Client) -> None:
    from promptory import Prompt

    prompt = Prompt.from_api(client.get(f"/api/v1/prompts/{MEDITATION_ID}").json())
    variables = {"user": {"display_name": "Bo"}, "vision": {"identity_statement": "I rest"}}
    remote = render(client, MEDITATION_ID, json={"variables": variables}).json()
    assert remote["rendered_body"] == prompt.render(variables)


@pytest.mark.parametrize(
    "request_body", [{"content": b""}, {"json": {}}, {"json": {"variables": None}}]
)
def test_empty_body_or_object_renders_without_variables(
    client: httpx.Client, request_body: dict[str, object]
) -> None:
    pid = prompt_id(client, "myorg", "myapp", "greeting")
    response = render(client, pid, **request_body)
    assert response.status_code == 200
    assert response.json()["rendered_body"] == "Hey there, welcome back to MyApp.\n"


def test_missing_variable_renders_as_nothing_and_if_is_false(client: httpx.Client) -> None:
    pid = prompt_id(client, "myorg", "myapp", "greeting")
    data = render(client, pid, json={"variables": {"user_name": "Alice", "formal": True}}).json()
    assert data["rendered_body"] == "Dear Alice, welcome back to MyApp.\n"


def test_include_is_resolved_on_the_server(client: httpx.Client) -> None:
    pid = prompt_id(client, "myorg", "myapp", "coach_checkin")
    data = render(client, pid, json={"variables": {"goal": "walk"}}).json()
    assert data["rendered_body"].startswith("Stay supportive and practical.")
    assert '("walk")' in data["rendered_body"]


def test_unknown_prompt_is_404(client: httpx.Client) -> None:
    response = render(client, "missing-id", json={})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "PROMPT_NOT_FOUND"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b'{"variables": [1]}', "'variables' must be a JSON object"),
        (b'{"variables": "x"}', "'variables' must be a JSON object"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_bad_body_is_400_invalid_body(client: httpx.Client, content: bytes, expected: str) -> None:
    response = render(
        client, MEDITATION_ID, content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_BODY"
    assert expected in error["message"]


def test_body_over_one_mebibyte_is_413(client: httpx.Client) -> None:
    big = b'{"variables": {"x": "' + b"a" * (1024 * 1024) + b'"}}'
    response = render(client, MEDITATION_ID, content=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_body_over_the_limit_without_content_length_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    response = render(client, MEDITATION_ID, content=chunks())
    assert response.status_code == 413


def test_template_error_is_400_render_error(server: RunningServer) -> None:
    server.repo.write_prompt("myorg", "myapp", "broken", "{{ user.name.first }}\n")
    server.wait_for_commit(server.repo.commit())
    with server.client() as client:
        response = render(client, prompt_id(client, "myorg", "myapp", "broken"), json={})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "RENDER_ERROR"
    assert "myorg/myapp/broken" in error["message"]


def test_sandbox_violation_is_400_render_error(server: RunningServer) -> None:
    server.repo.write_prompt("myorg", "myapp", "escape", "{{ ''.__class__.__mro__ }}\n")
    server.wait_for_commit(server.repo.commit())
    with server.client() as client:
        response = render(client, prompt_id(client, "myorg", "myapp", "escape"), json={})
    assert response.status_code == 400
    assert "unsafe" in response.json()["error"]["message"]


def test_slow_template_is_stopped_and_does_not_stall_other_requests(
    server: RunningServer,
) -> None:
    body = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    server.repo.write_prompt("myorg", "myapp", "slow", body)
    server.wait_for_commit(server.repo.commit())
    with server.client() as client:
        pid = prompt_id(client, "myorg", "myapp", "slow")
        result: dict[str, httpx.Response] = {}
        finished: dict[str, float] = {}

        def render_slowly() -> None:
            result["r"] = render(client, pid, json={})
            finished["render"] = time.monotonic()

        sent = threading.Event()
        client.event_hooks["request"] = [lambda request: sent.set()]
        worker = threading.Thread(target=render_slowly)
        worker.start()
        # The render request is on its way before the health check goes (the server renders
        # it for its whole time limit, far longer than a health check takes).
        assert sent.wait(5.0), "the render was not sent"
        health = httpx.get(f"{server.url}/health", timeout=5)
        finished["health"] = time.monotonic()
        worker.join(10)
    assert health.status_code == 200
    # Ordering, not a stopwatch: the health check is answered while the render still runs.
    assert finished["health"] < finished["render"]
    assert result["r"].status_code == 400
    assert "longer than" in result["r"].json()["error"]["message"]


# --- includes ---------------------------------------------------------------------------------


def test_include_prefers_the_including_prompts_environment(server: RunningServer) -> None:
    repo = server.repo
    repo.write_prompt("o", "a", "snip_prod", "PROD", name="snip", environment="production")
    repo.write_prompt("o", "a", "snip_dev", "DEV", name="snip", environment="development")
    repo.write_prompt("o", "a", "main_dev", '{% include "snip" %}', name="main")
    repo.write_prompt(
        "o", "a", "main_stg", '{% include "snip" %}', name="main", environment="staging"
    )
    server.wait_for_commit(repo.commit())
    with server.client() as client:
        dev = prompt_id(client, "o", "a", "main", environment="development")
        stg = prompt_id(client, "o", "a", "main", environment="staging")
        assert render(client, dev, json={}).json()["rendered_body"] == "DEV"
        # No staging variant of the snippet: the most promoted active one.
        assert render(client, stg, json={}).json()["rendered_body"] == "PROD"


def test_include_of_a_missing_prompt_is_400_naming_it(server: RunningServer) -> None:
    server.repo.write_prompt("o", "a", "main", '{% include "nowhere" %}')
    server.wait_for_commit(server.repo.commit())
    with server.client() as client:
        response = render(client, prompt_id(client, "o", "a", "main"), json={})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "RENDER_ERROR"
    assert "'nowhere'" in response.json()["error"]["message"]


@pytest.mark.parametrize("target", ["myorg/myapp/greeting", "../myapp/greeting", "..", "a/b"])
def test_include_cannot_reach_another_app(server: RunningServer, target: str) -> None:
    server.repo.write_prompt("o", "a", "main", f'{{% include "{target}" %}}')
    server.wait_for_commit(server.repo.commit())
    with server.client() as client:
        response = render(client, prompt_id(client, "o", "a", "main"), json={})
    assert response.status_code == 400
    assert "not a prompt name" in response.json()["error"]["message"]


def test_include_name_computed_at_render_time_is_refused(server: RunningServer) -> None:
    server.repo.write_prompt("o", "a", "main", "{% include which %}")
    server.wait_for_commit(server.repo.commit())
    with server.client() as client:
        pid = prompt_id(client, "o", "a", "main")
        response = render(client, pid, json={"variables": {"which": "main"}})
    assert response.status_code == 400
    assert "computed at render time" in response.json()["error"]["message"]


def test_include_cycle_is_400_naming_the_cycle(server: RunningServer) -> None:
    repo = server.repo
    repo.write_prompt("o", "a", "a", 'A {% include "b" %}')
    repo.write_prompt("o", "a", "b", 'B {% include "c" %}')
    repo.write_prompt("o", "a", "c", 'C {% include "b" %}')
    server.wait_for_commit(repo.commit())
    with server.client() as client:
        response = render(client, prompt_id(client, "o", "a", "a"), json={})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "include cycle: b -> c -> b"


def test_prompt_including_itself_is_a_cycle(server: RunningServer) -> None:
    server.repo.write_prompt("o", "a", "self", '{% include "self" %}')
    server.wait_for_commit(server.repo.commit())
    with server.client() as client:
        response = render(client, prompt_id(client, "o", "a", "self"), json={})
    assert response.json()["error"]["message"] == "include cycle: self -> self"


def _chain(server: RunningServer, length: int) -> str:
    """Prompts p0 -> p1 -> ... -> p<length>; returns the id of p0."""
    for level in range(length):
        server.repo.write_prompt("o", "c", f"p{level}", f'{level} {{% include "p{level + 1}" %}}')
    server.repo.write_prompt("o", "c", f"p{length}", "end")
    server.wait_for_commit(server.repo.commit())
    with server.client() as client:
        return prompt_id(client, "o", "c", "p0")


def test_includes_ten_levels_deep_render(server: RunningServer) -> None:
    pid = _chain(server, 10)
    with server.client() as client:
        response = render(client, pid, json={})
    assert response.status_code == 200
    assert response.json()["rendered_body"] == "0 1 2 3 4 5 6 7 8 9 end"


def test_includes_eleven_levels_deep_are_400(server: RunningServer) -> None:
    pid = _chain(server, 11)
    with server.client() as client:
        response = render(client, pid, json={})
    assert response.status_code == 400
    assert "deeper than 10 levels" in response.json()["error"]["message"]


def test_a_changed_include_is_rendered_fresh(server: RunningServer) -> None:
    with server.client() as client:
        pid = prompt_id(client, "myorg", "myapp", "coach_checkin")
        first = render(client, pid, json={}).json()["rendered_body"]
        server.repo.write_prompt(
            "myorg", "myapp", "safety_preamble", "New rules.", environment="production"
        )
        server.wait_for_commit(server.repo.commit())
        second = render(client, pid, json={}).json()["rendered_body"]
    assert first.startswith("Stay supportive")
    assert second.startswith("New rules.")


def test_render_at_a_ref_uses_that_commits_includes(server: RunningServer) -> None:
    old = server.repo.head
    server.repo.write_prompt(
        "myorg", "myapp", "safety_preamble", "New rules.", environment="production"
    )
    server.wait_for_commit(server.repo.commit())
    with server.client() as client:
        pid = prompt_id(client, "myorg", "myapp", "coach_checkin")
        response = client.post(f"/api/v1/prompts/{pid}/render", params={"ref": old}, json={})
    assert response.json()["rendered_body"].startswith("Stay supportive")
