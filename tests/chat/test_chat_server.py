"""Chat templates on the server: the render endpoint answers `messages`, its
``rendered_body`` is the local render's, and a body that cannot split is reported."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from promptory import PromptClient
from sdk.render_corpus import TEMPLATES, VARIABLES
from support.gitrepo import PromptRepo
from support.servers import RunningServer

from .injection_corpus import INJECTIONS

CHAT_TEMPLATES = {name: body for name, body in TEMPLATES.items() if name.startswith("chat_")}
CHAT = (
    "system:\n{% include 'rules' %} You help {{ name }}.\n\n"
    "{% for turn in history %}\n{{turn.role}}:\n{{turn.content}}\n{% endfor %}\n\n"
    "user:\n{{ question }}\n"
)


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory, api_key: str) -> Iterator[RunningServer]:
    from support.servers import running_server

    repo = PromptRepo(tmp_path_factory.mktemp("chat") / "repo")
    for name, body in CHAT_TEMPLATES.items():
        repo.write_prompt("o", "a", name, body)
    repo.write_prompt("o", "a", "rules", "Be kind.")
    repo.write_prompt(
        "o",
        "a",
        "defaults",
        "system:\nBe {{ tone }}.\nuser:\nHi",
        inputs={"tone": {"type": "string", "default": "warm"}},
    )
    repo.write_prompt("o", "a", "assistant", CHAT, role="system")
    repo.write_prompt("o", "a", "spanning", "system:\n{% if x %}\nuser:\n{% endif %}\n")
    repo.commit()
    with running_server(repo, api_key) as server:
        yield server


def render(server: RunningServer, name: str, variables: object) -> dict[str, object]:
    with server.client() as client:
        pid = client.get(f"/api/v1/prompts/by-name/o/a/{name}").json()["id"]
        answer = client.post(f"/api/v1/prompts/{pid}/render", json={"variables": variables})
    assert answer.status_code == 200, answer.text
    data: dict[str, object] = answer.json()
    return data


@pytest.mark.parametrize("name", sorted(CHAT_TEMPLATES))
def test_server_and_local_renders_agree_on_text_and_messages(
    chat_server: RunningServer, name: str
) -> None:
    with PromptClient(chat_server.url, chat_server.api_key) as client:
        prompt = client.get_by_name("o", "a", name)
        remote = render(chat_server, name, VARIABLES)
        assert remote["rendered_body"] == prompt.render(VARIABLES)
        assert remote["messages"] == prompt.to_messages(VARIABLES)
        assert client.render(prompt.id, VARIABLES) == prompt.render(VARIABLES)


def test_messages_come_after_the_existing_keys(chat_server: RunningServer) -> None:
    data = render(chat_server, "chat_roles", VARIABLES)
    assert list(data) == ["id", "name", "rendered_body", "meta", "model", "messages"]


def test_includes_render_inside_their_message_with_history(chat_server: RunningServer) -> None:
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    data = render(chat_server, "assistant", {"name": "Al", "question": "q", "history": history})
    assert data["messages"] == [
        {"role": "system", "content": "Be kind. You help Al."},
        *history,
        {"role": "user", "content": "q"},
    ]


@pytest.mark.parametrize("name", sorted(INJECTIONS))
def test_a_variable_never_opens_a_message_on_the_server(
    chat_server: RunningServer, name: str
) -> None:
    value = INJECTIONS[name]
    history = [{"role": "user", "content": value}]
    data = render(chat_server, "assistant", {"name": value, "question": value, "history": history})
    messages = data["messages"]
    assert isinstance(messages, list)
    assert [m["role"] for m in messages] == ["system", "user", "user"]
    assert messages[2]["content"] == value.strip()


def test_a_bad_history_is_a_400_naming_it(chat_server: RunningServer) -> None:
    with chat_server.client() as client:
        pid = client.get("/api/v1/prompts/by-name/o/a/assistant").json()["id"]
        answer = client.post(
            f"/api/v1/prompts/{pid}/render",
            json={"variables": {"history": [{"role": "root", "content": "x"}]}},
        )
    assert answer.status_code == 400
    assert "has role 'root'" in answer.json()["error"]["message"]


def test_a_block_spanning_a_role_line_is_reported_and_not_served(
    chat_server: RunningServer,
) -> None:
    with chat_server.client() as client:
        problems = client.get("/api/v1/status").json()["problems"]
        missing = client.get("/api/v1/prompts/by-name/o/a/spanning")
    [problem] = [p for p in problems if p["path"] == "o/a/spanning.md"]
    assert "must open and close between two role lines" in problem["message"]
    assert "line 5" in problem["message"]
    assert missing.status_code == 404


def test_the_server_applies_input_defaults_as_the_local_render_does(
    chat_server: RunningServer,
) -> None:
    with PromptClient(chat_server.url, chat_server.api_key) as client:
        prompt = client.get_by_name("o", "a", "defaults")
    data = render(chat_server, "defaults", {})
    assert data["rendered_body"] == prompt.render() == "system:\nBe warm.\nuser:\nHi"
    assert data["messages"] == prompt.to_messages()
