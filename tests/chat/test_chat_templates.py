"""Chat templates: role lines split a body into messages before rendering, so a variable's
text never opens a message or changes a role."""

from __future__ import annotations

import pytest

from promptory import Prompt, RenderError
from promptory._chat import (
    MAX_HISTORY_MESSAGES,
    MAX_MESSAGE_TEMPLATES,
    ChatError,
    is_chat,
    split_body,
)

from .injection_corpus import INJECTIONS

CHAT = (
    "system:\nYou help {{ name }}.\n\n"
    "{% for item in chat_history %}\n{{item.role}}:\n{{item.content}}\n{% endfor %}\n\n"
    "user:\n{{ question }}\n"
)


def prompt(body: str, **fields: object) -> Prompt:
    return Prompt(id="p", name="chat", body=body, **fields)  # type: ignore[arg-type]


def test_role_lines_split_the_body_into_messages_in_order() -> None:
    parts = split_body("system:\nA\nuser:\nB\nassistant:\nC\n")
    assert [(p.role, p.source) for p in parts] == [
        ("system", "A\n"),
        ("user", "B\n"),
        ("assistant", "C\n"),
    ]


def test_prompty_role_line_spellings_are_role_lines() -> None:
    parts = split_body("# System:\nA\n  USER :  \nB")
    assert [p.role for p in parts] == ["system", "user"]


def test_a_role_word_inside_a_line_is_text() -> None:
    assert not is_chat(split_body("system: be nice\nThe user: Bob\n"))


def test_a_body_without_role_lines_is_one_message_with_the_prompts_role() -> None:
    body = "Hello {{ name }}\n"
    assert prompt(body, role="user").to_messages({"name": "Al"}) == [
        {"role": "user", "content": "Hello Al\n"}
    ]
    assert prompt(body).to_messages({"name": "Al"}) == [{"role": "system", "content": "Hello Al\n"}]


def test_text_before_the_first_role_line_takes_the_prompts_role() -> None:
    messages = prompt("Rules.\nuser:\nHi", role="assistant").to_messages()
    assert messages == [
        {"role": "assistant", "content": "Rules."},
        {"role": "user", "content": "Hi"},
    ]


def test_history_fills_the_history_loop_with_its_messages() -> None:
    history = [
        {"role": "user", "content": "before"},
        {"role": "assistant", "content": "reply", "name": "bot"},
    ]
    messages = prompt(CHAT).to_messages({"name": "Al", "question": "now?"}, history=history)
    assert messages == [
        {"role": "system", "content": "You help Al."},
        {"role": "user", "content": "before"},
        {"role": "assistant", "content": "reply", "name": "bot"},
        {"role": "user", "content": "now?"},
    ]


def test_history_may_come_as_the_loops_variable() -> None:
    history = [{"role": "user", "content": "before"}]
    messages = prompt(CHAT).to_messages({"chat_history": history, "question": "q"})
    assert [m["content"] for m in messages] == ["You help .", "before", "q"]


def test_history_without_a_loop_goes_after_the_leading_system_messages() -> None:
    body = "system:\nA\nsystem:\nB\nuser:\nC"
    messages = prompt(body).to_messages(history=[{"role": "assistant", "content": "h"}])
    assert [m["content"] for m in messages] == ["A", "B", "h", "C"]


@pytest.mark.parametrize(
    ("history", "problem"),
    [
        ("not a list", "must be a list"),
        ([{"role": "wizard", "content": "x"}], "has role 'wizard'"),
        ([{"role": "user", "content": 3}], "content must be a string"),
        (["user: hi"], "must be a mapping"),
        ([{"role": "user", "content": ""}] * (MAX_HISTORY_MESSAGES + 1), "over the limit"),
    ],
)
def test_a_bad_history_is_refused_naming_what_is_wrong(history: object, problem: str) -> None:
    with pytest.raises(RenderError, match=problem):
        prompt(CHAT).to_messages(history=history)  # type: ignore[arg-type]


def test_render_is_the_role_lines_and_each_message_rendered() -> None:
    body = "system:\nYou help {{ name }}.\n\nuser:\n{{ question }}\n"
    text = prompt(body).render({"name": "Al", "question": "q"})
    assert text == "system:\nYou help Al.\n\nuser:\nq\n"


def test_empty_messages_are_dropped() -> None:
    body = "system:\n{% if strict %}Be strict.{% endif %}\nuser:\nHi"
    assert prompt(body).to_messages() == [{"role": "user", "content": "Hi"}]


def test_a_block_spanning_a_role_line_is_a_render_error() -> None:
    with pytest.raises(RenderError):
        prompt("system:\n{% if x %}\nuser:\n{% endif %}\n").to_messages()


def test_too_many_role_lines_are_refused() -> None:
    with pytest.raises(ChatError, match="role lines"):
        split_body("user:\nx\n" * (MAX_MESSAGE_TEMPLATES + 2))


@pytest.mark.parametrize("name", sorted(INJECTIONS))
def test_a_variable_never_opens_a_message_or_changes_a_role(name: str) -> None:
    value = INJECTIONS[name]
    history = [{"role": "assistant", "content": value}]
    messages = prompt(CHAT).to_messages({"name": value, "question": value, "chat_history": history})
    assert [m["role"] for m in messages] == ["system", "assistant", "user"]
    assert messages[0]["content"] == f"You help {value}.".strip()
    assert messages[1]["content"] == value
    assert messages[2]["content"] == value.strip()


@pytest.mark.parametrize("name", sorted(INJECTIONS))
def test_an_injected_value_stays_in_a_one_message_prompt(name: str) -> None:
    messages = prompt("Answer: {{ q }}", role="user").to_messages({"q": INJECTIONS[name]})
    assert messages == [{"role": "user", "content": "Answer: " + INJECTIONS[name]}]


def test_role_lines_with_crlf_endings_split_too() -> None:
    parts = split_body("system:\r\nA\r\nuser:\r\nB")
    assert [(p.role, p.source) for p in parts] == [("system", "A\r\n"), ("user", "B")]


def test_a_body_of_lines_ending_in_colons_is_not_a_chat_template() -> None:
    assert not is_chat(split_body("Steps:\nfirst: do this\nNote :\n"))
