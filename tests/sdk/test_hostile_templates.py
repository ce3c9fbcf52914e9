"""Hostile templates in the local sandbox: refused with a clear error, within the render's
limits.

Time bounds here are the render's own limit plus `SLACK`, which is generous on purpose: a
loaded machine or a coverage run may be several times slower, but a render that is not
bounded runs for seconds to minutes, far past it. The nested-loop family runs under a lower
time limit (`FAMILY_LIMITS`) to keep the run short; the mechanism is the one `Prompt.render`
uses, through the same environment.
"""

from __future__ import annotations

import os
import re
import time
import traceback
from typing import Any

import pytest
from jinja2.defaults import DEFAULT_FILTERS, DEFAULT_TESTS
from jinja2.exceptions import TemplateSyntaxError

from promptory import Prompt, RenderError, rendering
from promptory.rendering import (
    DEFAULT_LIMITS,
    PromptEnvironment,
    RenderLimits,
    compile_body,
    render_template,
)

from .hostile_corpus import (
    CANARY_VALUE,
    CANARY_VARIABLE,
    FORMAT_ESCAPES,
    INERT,
    NESTED_WALKS,
    NOT_WALKING_FILTERS,
    REFUSED,
    UNCOMPILABLE,
    WALKING_FILTERS,
    nested_walk,
    oversized_inputs,
)

#: Seconds a refused render may take past its time limit on a loaded machine.
SLACK = 2.5
#: A lower time limit for the nested-loop family, so its 126 renders stay short.
FAMILY_LIMITS = RenderLimits(max_seconds=0.05)
#: What a render stopped by a limit says: the time limit, or the work it may do in all.
LIMIT_NAMED = re.compile(
    r"render took longer than [\d.]+ s and was stopped"
    r"|the template built or walked more than [\d,]+ characters or items in all"
)


def _render(body: str, variables: dict[str, object], limits: RenderLimits) -> float:
    """Render `body` under `limits`, expecting a `RenderError`; the seconds it took."""
    template = compile_body(body).template
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render_template(template, variables, label="o/a/p", limits=limits)
    elapsed = time.monotonic() - started
    assert caught.value.code == "RENDER_LIMIT", caught.value
    return elapsed


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_hostile_template_is_refused_within_its_limit(name: str) -> None:
    body, variables = REFUSED[name]
    prompt = Prompt(id="p", name=name, org="o", app="a", body=body)
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        prompt.render(variables)
    assert time.monotonic() - started < DEFAULT_LIMITS.max_seconds + SLACK
    message = str(caught.value)
    assert f"o/a/{name}" in message
    assert caught.value.code in {
        "SANDBOX_VIOLATION",
        "RENDER_LIMIT",
        "UNDEFINED_VARIABLE",
        "RENDER_ERROR",
    }


def test_nested_sorts_stop_at_the_time_limit() -> None:
    # 63 x 63 sorts of 2,500 strings: 8.4 s when loops looked at the clock every 64 items.
    body, variables = REFUSED["nested_sort_reproducer"]
    prompt = Prompt(id="p", name="sorts", org="o", app="a", body=body)
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        prompt.render(variables)
    elapsed = time.monotonic() - started
    assert "render took longer than 0.5 s and was stopped" in str(caught.value)
    assert DEFAULT_LIMITS.max_seconds <= elapsed < DEFAULT_LIMITS.max_seconds + SLACK


@pytest.mark.parametrize("name", sorted(NESTED_WALKS))
def test_filter_in_nested_loops_stops_at_a_limit(name: str) -> None:
    body, variables = NESTED_WALKS[name]
    template = compile_body(body).template
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render_template(template, variables, label="o/a/p", limits=FAMILY_LIMITS)
    elapsed = time.monotonic() - started
    assert caught.value.code == "RENDER_LIMIT", caught.value
    assert LIMIT_NAMED.search(str(caught.value)), caught.value
    assert elapsed < FAMILY_LIMITS.max_seconds + SLACK


@pytest.fixture(scope="module")
def oversized() -> dict[str, Any]:
    """`l`, `n`, `s` and `d` past the per-call limits (built once: they are large)."""
    return oversized_inputs()


@pytest.mark.parametrize("name", sorted(WALKING_FILTERS))
def test_filter_given_more_than_one_call_may_walk_is_refused_before_it_runs(
    oversized: dict[str, Any], name: str
) -> None:
    # Refused on the size of its input, before it does any work.
    body = "{% set _ = " + WALKING_FILTERS[name] + " %}done"
    template = compile_body(body).template
    with pytest.raises(RenderError) as caught:
        render_template(template, oversized, label="o/a/p")
    assert caught.value.code == "RENDER_LIMIT"
    assert re.search(
        rf"filter '{name}' was given [\d,]+ (items|characters), over the limit of [\d,]+ per "
        "call",
        str(caught.value),
    ), caught.value


#: The second operand of the builtin tests that take one (every other takes none).
TEST_OPERANDS = dict.fromkeys(
    [
        "!=",
        "<",
        "<=",
        "==",
        ">",
        ">=",
        "divisibleby",
        "eq",
        "equalto",
        "ge",
        "greaterthan",
        "gt",
        "le",
        "lessthan",
        "lt",
        "ne",
        "sameas",
    ],
    ", 3",
)
TEST_OPERANDS["in"] = ", n"


@pytest.mark.parametrize("name", sorted(DEFAULT_TESTS))
def test_builtin_test_in_nested_loops_stops_at_a_limit(name: str) -> None:
    # Each test, through `select`, on 2,500 numbers, 63 x 63 times.
    expression = f"n | select('{name}'{TEST_OPERANDS.get(name, '')}) | list"
    template = compile_body(nested_walk(expression, 2)).template
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render_template(template, {}, label="o/a/p", limits=FAMILY_LIMITS)
    elapsed = time.monotonic() - started
    assert caught.value.code == "RENDER_LIMIT", caught.value
    assert LIMIT_NAMED.search(str(caught.value)), caught.value
    assert elapsed < FAMILY_LIMITS.max_seconds + SLACK


def test_every_builtin_filter_is_in_the_family_or_listed_as_not_walking() -> None:
    walking, constant = set(WALKING_FILTERS), set(NOT_WALKING_FILTERS)
    assert walking | constant == set(DEFAULT_FILTERS), "classify the new filter"
    assert not walking & constant


def test_the_sandbox_charges_every_filter_that_walks_its_input() -> None:
    # A filter the sandbox treats as constant-time is one the corpus says does not walk.
    assert rendering.CONSTANT_FILTERS.issubset(NOT_WALKING_FILTERS)


@pytest.mark.parametrize(
    "body",
    [
        "{% for a in l %}{% if a in l %}{% endif %}{% endfor %}",  # the `in` operator
        "{% for a in l %}{% if a is in(l) %}{% endif %}{% endfor %}",  # the `in` test
        "{% for a in l %}{% set _ = l.index(a) %}{% endfor %}",  # a list method
        "{% for a in l %}{% set _ = s.split() %}{% endfor %}",  # a str method
        "{% macro m(x) %}{{ x | sort | first }}{% endmacro %}"
        "{% for a in l %}{{ m(l) }}{% endfor %}",  # a macro
        "{% for a in l recursive %}{{ loop(l) }}{% endfor %}",  # a recursive loop
    ],
)
def test_loops_of_comparisons_methods_macros_and_recursion_stop_at_a_limit(body: str) -> None:
    variables = {"l": [str(i) for i in range(20_000)], "s": "word " * 20_000}
    assert _render(body, variables, FAMILY_LIMITS) < FAMILY_LIMITS.max_seconds + SLACK


@pytest.mark.parametrize("name", sorted(FORMAT_ESCAPES))
def test_format_method_from_attr_never_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # CVE-2025-27516: `|attr("format")` handed out the raw str.format before Jinja2 3.1.6.
    # The sandbox refuses it whatever Jinja2 is installed.
    monkeypatch.setenv(CANARY_VARIABLE, CANARY_VALUE)
    body, variables = FORMAT_ESCAPES[name]
    with pytest.raises(RenderError) as caught:
        Prompt(id="p", name=name, org="o", app="a", body=body).render(variables)
    assert caught.value.code == "SANDBOX_VIOLATION", caught.value
    assert CANARY_VALUE not in str(caught.value)
    assert os.environ["PATH"] not in str(caught.value)


def test_format_method_from_attr_still_formats_plain_fields() -> None:
    body = '{{ "{} and {}" | attr("format")("this", "that") }}'
    assert Prompt(id="p", name="n", body=body).render() == "this and that"


@pytest.mark.parametrize("name", sorted(UNCOMPILABLE))
def test_body_python_cannot_compile_is_a_short_render_error(name: str) -> None:
    prompt = Prompt(id="p", name=name, org="o", app="a", body=UNCOMPILABLE[name])
    for use in (prompt.render, lambda: prompt.variables, prompt.needs_server_render):
        with pytest.raises(RenderError) as caught:
            use()
        error = caught.value
        assert error.code == "TEMPLATE_SYNTAX_ERROR"
        assert re.search(rf"prompt o/a/{name}: template too deeply nested to compile", str(error))
        # No chained RecursionError: a report of it would be thousands of frames long.
        assert error.__cause__ is None and error.__suppress_context__
        assert len("".join(traceback.format_exception(error))) < 5000


@pytest.mark.parametrize("name", sorted(UNCOMPILABLE))
def test_any_compile_in_the_sandbox_reports_python_limits_as_a_syntax_error(name: str) -> None:
    # The server compiles includes through its own environment: a syntax error there is
    # a 400, where a RecursionError would be a 500.
    with pytest.raises(TemplateSyntaxError) as caught:
        PromptEnvironment().from_string(UNCOMPILABLE[name])
    assert "too deeply nested to compile" in caught.value.message


@pytest.mark.parametrize("name", sorted(INERT))
def test_payload_in_variables_is_only_data(name: str) -> None:
    body, variables, expected = INERT[name]
    assert Prompt(id="p", name=name, body=body).render(variables) == expected


def test_variables_are_not_changed_by_a_template() -> None:
    items = [1, 2, 3]
    with pytest.raises(RenderError):
        Prompt(id="p", name="n", body="{{ items.append(4) }}").render({"items": items})
    assert items == [1, 2, 3]
