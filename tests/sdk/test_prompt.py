"""The Prompt dataclass: fields, read-only data, local rendering."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import threading

import pytest

from promptory import Prompt, RenderError, UndefinedVariableError

SPEC_FIELDS = [
    "id", "name", "version", "org", "app", "domain", "description", "type", "role", "model",
    "modality", "tts", "audio", "environment", "active", "tags", "body", "includes", "meta",
    "git_sha", "updated_at",
]  # fmt: skip


def api_answer(**fields: object) -> dict[str, object]:
    data: dict[str, object] = {
        "id": "550e8400-e29b-41d4-a716-446655440000",
        "app_id": "a-1",
        "name": "meditation_script_relax",
        "version": "1.2.0",
        "org": "myorg",
        "app": "myapp",
        "domain": "meditation",
        "description": "Relaxing script",
        "type": "chat",
        "role": "system",
        "model": {"default": "gemini-2.0-flash", "temperature": 0.7, "fallback": ["gpt-4o-mini"]},
        "modality": None,
        "tts": {"provider": "elevenlabs", "settings": {"stability": 0.5}},
        "audio": None,
        "environment": "production",
        "active": True,
        "tags": ["relax", "sleep"],
        "body": "Hello {{ user.display_name }}",
        "includes": [],
        "git_sha": "d38f5806",
        "updated_at": "2026-11-24 21:46:51",
    }
    data.update(fields)
    return data


def test_prompt_has_every_field_of_the_spec() -> None:
    names = [f.name for f in dataclasses.fields(Prompt)]
    for name in SPEC_FIELDS:
        assert name in names
    prompt = Prompt.from_api(api_answer())
    assert prompt.model["default"] == "gemini-2.0-flash"
    assert prompt.meta == api_answer()
    assert prompt.meta["app_id"] == "a-1"


def test_missing_optional_fields_get_empty_values_and_unknown_keys_are_kept() -> None:
    prompt = Prompt.from_api({"id": "x", "name": "n", "body": "b", "new_field": 1})
    assert (prompt.model, prompt.tags, prompt.includes, prompt.role) == ({}, [], [], None)
    assert prompt.active is True
    assert prompt.meta["new_field"] == 1


def test_model_access_as_in_the_spec() -> None:
    prompt = Prompt.from_api(api_answer())
    assert prompt.model.get("default") == "gemini-2.0-flash"
    assert prompt.model.get("temperature", 0.7) == 0.7
    assert prompt.model.get("max_tokens", 4000) == 4000
    assert prompt.model.get("fallback", []) == ["gpt-4o-mini"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.model.__setitem__("default", "other"),
        lambda p: p.model.update(default="other"),
        lambda p: p.model.pop("default"),
        lambda p: p.model["fallback"].append("x"),
        lambda p: p.tags.append("x"),
        lambda p: p.tags.sort(),
        lambda p: p.meta.clear(),
        lambda p: p.tts["settings"].__setitem__("stability", 1),
        lambda p: setattr(p, "body", "x"),
    ],
)
def test_a_caller_cannot_change_a_prompt_for_other_callers(mutate) -> None:
    prompt = Prompt.from_api(api_answer())
    with pytest.raises((TypeError, dataclasses.FrozenInstanceError)):
        mutate(prompt)
    assert prompt.model["default"] == "gemini-2.0-flash"
    assert prompt.tags == ["relax", "sleep"]


def test_copies_of_prompt_data_are_ordinary_mutable_containers() -> None:
    prompt = Prompt.from_api(api_answer())
    model = dict(prompt.model)
    model["default"] = "other"
    deep = copy.deepcopy(prompt.model)
    deep["fallback"].append("x")
    assert prompt.model["default"] == "gemini-2.0-flash"
    assert prompt.model["fallback"] == ["gpt-4o-mini"]
    assert isinstance(prompt.model, dict)
    assert json.loads(json.dumps(prompt.meta)) == api_answer()


def test_prompt_pickles_and_keeps_its_data_read_only() -> None:
    prompt = Prompt.from_api(api_answer())
    prompt.render({"user": {"display_name": "A"}})  # compiled template must not be pickled
    restored = pickle.loads(pickle.dumps(prompt))
    assert restored == prompt
    with pytest.raises(TypeError):
        restored.model["x"] = 1


def test_render_substitutes_variables() -> None:
    prompt = Prompt.from_api(api_answer())
    assert prompt.render(variables={"user": {"display_name": "Alice"}}) == "Hello Alice"


@pytest.mark.parametrize(
    ("body", "variables", "expected"),
    [
        ("{{ user.display_name }}", {"user": {"display_name": "Al"}}, "Al"),
        ("{% if formal %}Dear{% else %}Hey{% endif %}", {}, "Hey"),
        ("{% if formal %}Dear{% else %}Hey{% endif %}", {"formal": True}, "Dear"),
        ("{% for item in items %}{{ item }}{% endfor %}", {"items": ["a", "b"]}, "ab"),
        ("{{ name | upper }}", {"name": "al"}, "AL"),
        ("{{ name | default('World') }}", {}, "World"),
        ("line\n", {}, "line\n"),
        ("{{ missing }}x", {}, "x"),
        ("<b>{{ v }}</b>", {"v": "<i>"}, "<b><i></b>"),
    ],
)
def test_render_supports_what_the_spec_lists(body: str, variables: dict, expected: str) -> None:
    assert Prompt(id="i", name="n", body=body).render(variables) == expected


def test_render_compiles_once_per_body() -> None:
    prompt = Prompt(id="i", name="n", body="Hi {{ a }}")
    prompt.render({"a": 1})
    compiled = prompt.compiled()
    prompt.render({"a": 2})
    assert prompt.compiled() is compiled
    twin = Prompt(id="j", name="m", body="Hi {{ a }}")
    assert twin.compiled() is compiled  # same body, same compiled template


def test_render_is_safe_from_many_threads() -> None:
    prompt = Prompt(id="i", name="n", body="{% for i in items %}{{ i }}{% endfor %} {{ who }}")
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for _ in range(200):
                out = prompt.render({"items": [index] * 3, "who": index})
                assert out == f"{index}{index}{index} {index}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []


def test_render_error_names_the_prompt_and_the_line() -> None:
    prompt = Prompt(id="i", name="n", org="o", app="a", body="ok\n{{ 1 / 0 }}")
    with pytest.raises(RenderError) as caught:
        prompt.render()
    assert "o/a/n" in str(caught.value)
    assert "line 2" in str(caught.value)
    assert "ZeroDivisionError" in str(caught.value)


def test_syntax_error_names_the_line() -> None:
    prompt = Prompt(id="i", name="n", body="a\nb\n{% if %}")
    with pytest.raises(RenderError, match="line 3"):
        prompt.render()


def test_local_render_of_an_include_points_to_client_render() -> None:
    prompt = Prompt(id="i", name="n", body='{% include "other" %}', includes=["other"])
    with pytest.raises(RenderError, match=r"client\.render"):
        prompt.render()


def test_variables_lists_what_the_template_reads() -> None:
    prompt = Prompt(
        id="i",
        name="n",
        body="{% set x = 1 %}{{ user.name }} {{ x }}{% for i in items %}{{ i }}{% endfor %}",
    )
    assert prompt.variables == ("items", "user")


def test_strict_render_names_every_missing_variable() -> None:
    prompt = Prompt(id="i", name="n", body="{{ a }} {{ b }} {{ c | default('x') }}")
    with pytest.raises(UndefinedVariableError) as caught:
        prompt.render({"b": 1}, strict=True)
    assert caught.value.missing == ["a"]
    with pytest.raises(UndefinedVariableError) as caught:
        prompt.render({}, strict=True)
    assert caught.value.missing == ["a", "b"]
    assert "a, b" in str(caught.value)


def test_strict_render_accepts_guarded_variables_and_catches_missing_attributes() -> None:
    prompt = Prompt(id="i", name="n", body="{% if x is defined %}{{ x }}{% endif %}{{ u.name }}")
    assert prompt.render({"u": {"name": "A"}}, strict=True) == "A"
    with pytest.raises(UndefinedVariableError, match="name"):
        prompt.render({"u": {}}, strict=True)


def test_lenient_render_is_unchanged_by_strict_mode() -> None:
    prompt = Prompt(id="i", name="n", body="[{{ a }}]")
    assert prompt.render({}) == "[]"


def test_to_messages_gives_openai_style_messages() -> None:
    prompt = Prompt(id="i", name="n", body="Hi {{ who }}", role="user")
    messages = prompt.to_messages({"who": "Al"})
    assert messages == [{"role": "user", "content": "Hi Al"}]
    messages[0]["content"] = "changed"
    assert prompt.to_messages({"who": "Al"}) == [{"role": "user", "content": "Hi Al"}]
    assert Prompt(id="i", name="n", body="x").to_messages() == [{"role": "system", "content": "x"}]


def test_variables_must_be_a_mapping() -> None:
    with pytest.raises(RenderError, match="mapping"):
        Prompt(id="i", name="n", body="x").render(["not", "a", "mapping"])  # type: ignore[arg-type]
