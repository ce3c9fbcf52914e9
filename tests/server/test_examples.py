"""The example prompts shipped for the demo: valid, and they do what the spec shows."""

from __future__ import annotations

import httpx
import pytest

from promptory import Prompt
from promptory.server.files import parse_prompt_file
from support.servers import EXAMPLES, RunningServer

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"


def test_examples_are_laid_out_as_org_app_name() -> None:
    paths = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.md"))
    assert paths == [
        "futureself/meditate/meditation_script_relax.md",
        "myorg/myapp/coach_checkin.md",
        "myorg/myapp/greeting.dev.md",
        "myorg/myapp/greeting.md",
        "myorg/myapp/meditation_script_relax.md",
        "myorg/myapp/safety_preamble.md",
    ]


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.md")), ids=lambda p: p.name)
def test_every_example_parses_without_unknown_keys(path) -> None:  # type: ignore[no-untyped-def]
    org, app = path.relative_to(EXAMPLES).parts[:2]
    prompt = parse_prompt_file(path.name, path.read_bytes(), org=org, app=app)
    assert prompt.unknown_keys == ()


def test_served_examples_have_no_problems(shared_server: RunningServer) -> None:
    with shared_server.client() as client:
        assert client.get("/api/v1/status").json()["problems"] == []


def test_spec_quick_start_meditation_renders_locally(shared_server: RunningServer) -> None:
    with shared_server.client() as client:
        prompt = Prompt.from_api(client.get(f"/api/v1/prompts/{MEDITATION_ID}").json())
    assert prompt.name == "meditation_script_relax"
    assert prompt.model["default"] == "gemini-2.0-flash"
    assert prompt.model["temperature"] == 0.7
    assert prompt.model["max_tokens"] == 4000
    assert prompt.model["fallback"]
    assert prompt.role == "system"
    assert prompt.domain == "meditation"
    assert prompt.type == "chat"
    text = prompt.render(
        variables={
            "user": {"display_name": "Alice", "elevenlabs_voice_id": "abc123"},
            "vision": {"identity_statement": "I am confident"},
        }
    )
    assert "Alice" in text
    assert "abc123" in text
    assert "I am confident" in text


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"user_name": "Alice"}, "Hey Alice, welcome back to MyApp.\n"),
        ({"name": "Alice"}, "Hey Alice, welcome back to MyApp.\n"),
        ({"name": "Alice", "formal": True}, "Dear Alice, welcome back to MyApp.\n"),
    ],
)
def test_spec_greeting_examples_render(
    shared_server: RunningServer, variables: dict[str, object], expected: str
) -> None:
    with shared_server.client() as client:
        data = client.get("/api/v1/prompts/by-name/myorg/myapp/greeting").json()
    assert Prompt.from_api(data).render(variables) == expected


def test_greeting_has_a_different_development_variant(shared_server: RunningServer) -> None:
    with shared_server.client() as client:
        production = client.get("/api/v1/prompts/by-name/myorg/myapp/greeting").json()
        development = client.get(
            "/api/v1/prompts/by-name/myorg/myapp/greeting", params={"environment": "development"}
        ).json()
    assert production["body"] != development["body"]
    assert production["id"] != development["id"]


def test_spec_integration_example_prompt_renders(shared_server: RunningServer) -> None:
    response = httpx.get(
        f"{shared_server.url}/api/v1/prompts/by-name/futureself/meditate/meditation_script_relax",
        headers={"Authorization": f"Bearer {shared_server.api_key}"},
    )
    prompt = Prompt.from_api(response.json())
    text = prompt.render(
        variables={
            "user": {"display_name": "Sam", "elevenlabs_voice_id": "v1"},
            "vision": {"identity_statement": "I am calm", "deep_why": "my family"},
            "duration_minutes": 10,
        }
    )
    assert "Sam" in text
    assert "10-minute" in text
    assert "my family" in text
    assert prompt.model["default"] == "gemini-2.0-flash"
