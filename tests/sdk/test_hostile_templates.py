"""Hostile templates in the local sandbox: refused quickly, with a clear error."""

from __future__ import annotations

import time

import pytest

from promptory import Prompt, RenderError

from .hostile_corpus import INERT, REFUSED


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_hostile_template_is_refused_within_a_second(name: str) -> None:
    body, variables = REFUSED[name]
    prompt = Prompt(id="p", name=name, org="o", app="a", body=body)
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        prompt.render(variables)
    assert time.monotonic() - started < 1.0
    message = str(caught.value)
    assert f"o/a/{name}" in message
    assert caught.value.code in {
        "SANDBOX_VIOLATION",
        "RENDER_LIMIT",
        "UNDEFINED_VARIABLE",
        "RENDER_ERROR",
    }


@pytest.mark.parametrize("name", sorted(INERT))
def test_payload_in_variables_is_only_data(name: str) -> None:
    body, variables, expected = INERT[name]
    assert Prompt(id="p", name=name, body=body).render(variables) == expected


def test_variables_are_not_changed_by_a_template() -> None:
    items = [1, 2, 3]
    with pytest.raises(RenderError):
        Prompt(id="p", name="n", body="{{ items.append(4) }}").render({"items": items})
    assert items == [1, 2, 3]
