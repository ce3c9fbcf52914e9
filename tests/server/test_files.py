"""Prompt files: front matter parsing, validation, defaults, and the fast index-key scan."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptory.server.files import (
    MAX_FILE_BYTES,
    NAMESPACE,
    PromptFileError,
    PromptText,
    app_uuid,
    parse_front_matter,
    parse_prompt_file,
    prompt_uuid,
    scan_index_keys,
)

PATH = "myorg/myapp/greeting.md"


def parse(text: str | bytes, path: str = PATH):  # type: ignore[no-untyped-def]
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse_prompt_file(path, data, org="myorg", app="myapp")


def error_of(text: str | bytes) -> PromptFileError:
    with pytest.raises(PromptFileError) as caught:
        parse(text)
    return caught.value


def test_defaults_fill_everything_the_front_matter_leaves_out() -> None:
    prompt = parse("---\nversion: 1.0.0\n---\nHello\n")
    assert prompt.name == "greeting"
    assert prompt.type == "chat"
    assert prompt.environment == "development"
    assert prompt.active is True
    assert prompt.role is None
    assert prompt.model == {}
    assert prompt.modality is None
    assert prompt.tts is None
    assert prompt.audio is None
    assert prompt.tags == ()
    assert prompt.includes == ()


def test_missing_id_is_uuid5_of_org_app_name_environment() -> None:
    prompt = parse("---\nversion: 1.0.0\nenvironment: staging\n---\n")
    expected = uuid.uuid5(NAMESPACE, "myorg/myapp/greeting/staging")
    assert prompt.id == str(expected) == prompt_uuid("myorg", "myapp", "greeting", "staging")


def test_app_id_is_uuid5_of_org_and_app() -> None:
    assert app_uuid("myorg", "myapp") == str(uuid.uuid5(NAMESPACE, "myorg/myapp"))


def test_id_is_kept_in_canonical_lowercase_form() -> None:
    prompt = parse("---\nid: 550E8400-E29B-41D4-A716-446655440000\nversion: 1\n---\n")
    assert prompt.id == "550e8400-e29b-41d4-a716-446655440000"


def test_id_that_is_not_a_uuid_is_refused() -> None:
    error = error_of("---\nid: greeting-1\nversion: 1\n---\n")
    assert "'id'" in error.message
    assert "UUID" in error.message


def test_front_matter_name_overrides_the_file_stem() -> None:
    assert parse("---\nname: hello\nversion: 1\n---\n").name == "hello"


def test_model_is_kept_as_written() -> None:
    prompt = parse(
        "---\nversion: 1\nmodel:\n  default: gemini-2.0-flash\n  temperature: 0.7\n"
        "  fallback: [a, b]\n---\n"
    )
    assert prompt.model == {
        "default": "gemini-2.0-flash",
        "temperature": 0.7,
        "fallback": ["a", "b"],
    }


def test_version_read_as_a_number_keeps_its_text() -> None:
    assert parse("---\nversion: 1.10\n---\n").version == "1.10"
    assert parse("---\nversion: 2\n---\n").version == "2"


def test_version_is_required() -> None:
    error = error_of("---\nname: x\n---\n")
    assert "'version' is required" in error.message


@pytest.mark.parametrize("version", ['"1.0 beta"', '"1.0\\""', '"-1"', "[1]", "true"])
def test_version_outside_the_allowed_characters_is_refused(version: str) -> None:
    error = error_of(f"---\nversion: {version}\n---\n")
    assert "'version'" in error.message


def test_wrong_type_names_the_field_the_expected_type_and_the_line() -> None:
    error = error_of("---\nversion: 1\ntags: urgent\n---\n")
    assert error.message == "field 'tags' (line 3): must be a list of strings, not a string"
    assert error.line == 3
    assert str(error).startswith(f"{PATH}: ")


@pytest.mark.parametrize(
    ("line", "field", "expected"),
    [
        ("active: 'yes'", "active", "true or false"),
        ("model: fast", "model", "a mapping"),
        ("type: poem", "type", "one of chat, completion, tts, transcription"),
        ("role: narrator", "role", "one of system, user, assistant"),
        ("environment: prod", "environment", "one of development, staging, production"),
        ("description: 12", "description", "a string"),
        ("includes: [a, 2]", "includes", "a list of strings"),
        ("name: a/b", "name", "not a valid name"),
        ("includes: [../x]", "includes", "not a prompt name"),
    ],
)
def test_each_field_has_one_type(line: str, field: str, expected: str) -> None:
    error = error_of(f"---\nversion: 1\n{line}\n---\n")
    assert f"field '{field}' (line 3)" in error.message
    assert expected in error.message


def test_invalid_yaml_names_the_line() -> None:
    error = error_of("---\nversion: 1\nmodel: {default: x\nname: y\n---\n")
    assert error.message.startswith("invalid YAML in front matter on line")
    assert error.line is not None


def test_front_matter_that_is_not_a_mapping_is_refused() -> None:
    assert "mapping" in error_of("---\n- a\n- b\n---\n").message


def test_values_json_cannot_hold_are_refused() -> None:
    error = error_of("---\nversion: 1\nmodel: {temperature: .nan}\n---\n")
    assert "model.temperature" in error.message


def test_dates_in_dicts_become_iso_strings() -> None:
    prompt = parse("---\nversion: 1\nmodel: {released: 2024-05-01}\n---\n")
    assert prompt.model == {"released": "2024-05-01"}


def test_unknown_keys_are_kept_for_lint_and_otherwise_ignored() -> None:
    prompt = parse("---\nversion: 1\nowner: ana\nreviewed: true\n---\n")
    assert prompt.unknown_keys == ("owner", "reviewed")


def test_body_is_everything_after_the_closing_line_byte_for_byte() -> None:
    body = "Line one  \r\n\n{{ x }}\n\n\n"
    assert parse(f"---\nversion: 1\n---\n{body}").body == body
    assert parse("---\nversion: 1\n---").body == ""


def test_a_line_of_dashes_in_the_body_stays_in_the_body() -> None:
    assert parse("---\nversion: 1\n---\nA\n---\nB\n").body == "A\n---\nB\n"


def test_includes_merge_front_matter_and_body_references_in_order() -> None:
    prompt = parse(
        "---\nversion: 1\nincludes: [b, a]\n---\n"
        '{% include "a" %}{% include "c" %}{% import "d" as d %}'
    )
    assert prompt.includes == ("b", "a", "c", "d")


def test_template_syntax_error_names_the_line_of_the_file() -> None:
    error = error_of("---\nversion: 1\n---\nfine\n{% if %}\n")
    assert error.line == 5
    assert error.message.startswith("template syntax error on line 5")


def test_unknown_filter_is_a_template_error() -> None:
    assert "template syntax error" in error_of("---\nversion: 1\n---\n{{ x | nosuch }}").message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"---\nversion: 1\n---\n\x00\x01", "binary"),
        (b"---\nversion: 1\n---\n\xff\xfe", "not UTF-8"),
        (b"---\nversion: 1\n---\n" + b"x" * MAX_FILE_BYTES, "over the limit"),
        (b"version: 1\n", "no front matter"),
        (b"---\nversion: 1\nbody\n", "not closed"),
    ],
)
def test_unreadable_files_are_refused_with_the_reason(data: bytes, expected: str) -> None:
    assert expected in error_of(data).message


def test_byte_order_mark_is_allowed() -> None:
    assert parse("\ufeff---\nversion: 1\n---\nHi").body == "Hi"


# --- the scan agrees with YAML ------------------------------------------------------------------

AGREEING = [
    "version: 1\n",
    "id: 550e8400-e29b-41d4-a716-446655440000  # fixed\nversion: 1\n",
    "name: greeting\nenvironment: production\nactive: false\n",
    "name: greeting\nname: second\n",
    'description: "it\'s: fine"\nname: quoted_ok\n',
    "tags:\n- a\n- b\nenvironment: staging\n",
    "model:\n  name: inner\n  environment: nested\nname: outer\n",
    "description: |\n  id: not-a-key\nname: after_block\n",
    "active: true # yes\nname: x.y-z_1\n",
    "tags: [a, b]\nname: n\n",
    "\n# comment\nname: commented\n\n",
]

UNSURE = [
    'description: "runs on\nid: 550e8400-e29b-41d4-a716-446655440000"\n',
    "name: continued\n  on the next line\n",
    "name: 123\n",
    "name: yes\n",
    "active: yes\n",
    "name: 'quoted'\n",
    "name: &anchor value\n",
    "<<: {name: merged}\n",
    '"name": quoted_key\n',
    "environment: prod\n",
    "id: not-a-uuid\n",
    "tags: [a,\n  b]\nname: x\n",
    "name:\n  nested\n",
]


@pytest.mark.parametrize("front", AGREEING)
def test_scan_reads_the_same_keys_as_yaml(front: str) -> None:
    scanned = scan_index_keys(front)
    assert scanned is not None
    parsed = parse_front_matter(front + "version: 1\n").index_keys
    assert scanned == parsed


@pytest.mark.parametrize("front", UNSURE)
def test_scan_gives_up_when_yaml_might_read_it_differently(front: str) -> None:
    assert scan_index_keys(front) is None


def test_text_parsed_on_demand_matches_the_full_parse() -> None:
    data = b"---\nversion: 1\nname: hi\nmodel: {a: 1}\n---\nHello {{ x }}\n"
    text = PromptText(data)
    assert text.keys.name == "hi"
    assert text.front_matter().model == {"a": 1}
    assert text.references() == ()


_KEYS = ("id", "name", "environment", "active", "description", "tags", "model")
_VALUES = (
    "550e8400-e29b-41d4-a716-446655440000",
    "greeting",
    "production",
    "staging",
    "true",
    "false",
    "yes",
    "null",
    "12",
    "1.5",
    "'quoted'",
    '"double: quoted"',
    '"open',
    'close"',
    "[a, b]",
    "{a: 1}",
    "[a,",
    "x # comment",
    "&anchor greeting",
    "*anchor",
    "|",
    ">-",
    "",
)
_EXTRA_LINES = ("  indented: 1", "- item", "# comment", "", "  more text", "plain words", "\t tab")


@st.composite
def _front_matters(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            lines.append(f"{draw(st.sampled_from(_KEYS))}: {draw(st.sampled_from(_VALUES))}")
        else:
            lines.append(draw(st.sampled_from(_EXTRA_LINES)))
    return "\n".join(lines) + "\nversion: 1\n"


@settings(max_examples=400, deadline=None)
@given(_front_matters())
def test_scan_never_disagrees_with_yaml(front: str) -> None:
    scanned = scan_index_keys(front)
    if scanned is None:
        return
    try:
        parsed = parse_front_matter(front)
    except PromptFileError:
        return  # a file YAML refuses is never served, whatever the scan read
    assert scanned == parsed.index_keys


@pytest.mark.parametrize("name", ["a", "greeting", "x.y-z_1", "ünïcode"])
def test_derived_ids_are_exactly_uuid5(name: str) -> None:
    for environment in ("development", "staging", "production"):
        expected = uuid.uuid5(NAMESPACE, f"o/a/{name}/{environment}")
        assert prompt_uuid("o", "a", name, environment) == str(expected)
