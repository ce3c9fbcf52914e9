"""Typed inputs: defaults fill what the variables lack; a strict render refuses missing
required inputs and wrong types with one error naming each."""

from __future__ import annotations

from typing import Any

import pytest

from promptory import InvalidInputError, Prompt, RenderError, UndefinedVariableError
from promptory._inputs import InputsError, parse_inputs

INPUTS = {
    "name": {"type": "string", "required": True, "description": "Who", "sample": "Ada"},
    "count": {"type": "integer", "default": 3},
    "ratio": {"type": "number", "default": 0.5},
    "formal": {"type": "boolean", "default": False},
    "tags": {"type": "array", "default": []},
    "profile": {"type": "object", "default": {}},
}
BODY = "{{ name }} {{ count }} {{ ratio }} {{ formal }} {{ tags | length }} {{ profile | length }}"


def prompt(body: str = BODY, inputs: dict[str, Any] | None = None) -> Prompt:
    return Prompt(id="p", name="typed", body=body, inputs=INPUTS if inputs is None else inputs)


def test_render_applies_defaults() -> None:
    assert prompt().render({"name": "Ada"}) == "Ada 3 0.5 False 0 0"


def test_given_values_win_over_defaults() -> None:
    assert prompt().render({"name": "Ada", "count": 7}) == "Ada 7 0.5 False 0 0"


def test_strict_refuses_a_missing_required_input() -> None:
    with pytest.raises(UndefinedVariableError) as caught:
        prompt().render({}, strict=True)
    assert caught.value.missing == ["name"]
    assert type(caught.value) is UndefinedVariableError


def test_strict_names_every_wrong_type_and_missing_input_in_one_error() -> None:
    bad = {"count": True, "ratio": "x", "formal": 1, "tags": "a,b", "profile": [1]}
    with pytest.raises(InvalidInputError) as caught:
        prompt().render(bad, strict=True)
    error = caught.value
    assert error.missing == ["name"]
    assert error.invalid == {
        "count": "expected integer, got boolean",
        "ratio": "expected number, got string",
        "formal": "expected boolean, got integer",
        "tags": "expected array, got string",
        "profile": "expected object, got array",
    }
    for name in ("name", "count", "ratio", "formal", "tags", "profile"):
        assert name in str(error)
    assert isinstance(error, RenderError)


def test_number_takes_an_integer_and_strict_passes_good_values() -> None:
    text = prompt().render({"name": "Ada", "ratio": 2, "tags": ["x"]}, strict=True)
    assert text == "Ada 3 2 False 1 0"


def test_strict_also_names_undeclared_variables_the_body_needs() -> None:
    with pytest.raises(UndefinedVariableError) as caught:
        prompt(BODY + " {{ extra }}").render({"name": "Ada"}, strict=True)
    assert caught.value.missing == ["extra"]


def test_to_messages_applies_defaults_and_strict_checks_in_chat_templates() -> None:
    chat = prompt("system:\nCount {{ count }}\nuser:\n{{ name }}")
    assert chat.to_messages({"name": "Ada"})[0]["content"] == "Count 3"
    with pytest.raises(InvalidInputError):
        chat.to_messages({"name": 5}, strict=True)


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ({"x": "string"}, "must be a mapping"),
        ({"x": {"type": "text"}}, "has type 'text'"),
        ({"x": {"kind": "string"}}, "unknown key(s) kind"),
        ({"x": {"required": "yes"}}, "'required' must be true or false"),
        ({"x": {"required": True, "default": 1}}, "required and has a default"),
        ({"x": {"type": "integer", "default": "1"}}, "default is not of type integer"),
        ({"x": {"type": "string", "sample": 1}}, "sample is not of type string"),
        ({"not a name": {}}, "not a variable name"),
    ],
)
def test_a_bad_declaration_names_the_input(inputs: dict[str, Any], problem: str) -> None:
    with pytest.raises(InputsError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_inputs(inputs)
