"""Hostile templates committed to a repository and rendered by the server.

Every payload of `sdk.hostile_corpus.REFUSED`, committed as a prompt body, is refused by
``POST /api/v1/prompts/{id}/render`` with a 400 ``RENDER_ERROR`` that names the prompt and the
cause, within the render's time limit plus a generous slack (`BOUND`); the same payloads
behind an ``{% include %}`` reach the server through `PromptClient.render()` and raise
`RenderError`. Every builtin filter that walks its input, inside nested loops, stops at a
limit. The `|attr("format")` escapes never show the server's environment. Payloads in
variables are data. While bombs render, other requests are answered: renders run off the
event loop.

The server runs in a memory-capped child (`isolation.IsolatedServer`): a payload that escapes
the limits fails its test in seconds instead of freezing or exhausting the machine.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptory import PromptClient, RenderError
from promptory.server.files import prompt_uuid
from promptory.server.keys import generate_key
from sdk.hostile_corpus import (
    CANARY_VALUE,
    CANARY_VARIABLE,
    FORMAT_ESCAPES,
    INERT,
    NESTING_DEPTHS,
    REFUSED,
    WALK_DICT,
    WALKING_FILTERS,
    nested_walk,
)
from support.gitrepo import PromptRepo

from .conftest import Tally
from .isolation import IsolatedServer

#: Payloads beyond the shared corpus. (The corpus's ``join_bomb`` fails on operator
#: precedence, ``100000 | join``, before its join is ever built; this one reaches the join.)
MORE_REFUSED: dict[str, tuple[str, dict[str, Any]]] = {
    "join_separator_bomb": (
        "{% set s = 'x' * 100000 %}{{ [s, s, s, s, s, s, s, s, s] | join(s) }}",
        {},
    ),
}

#: Every hostile body, by name.
ALL_REFUSED = {**REFUSED, **MORE_REFUSED}

#: Hostile uses of variables: the body is plain, the variables make it a bomb or an escape.
REFUSED_BY_VARIABLES: dict[str, tuple[str, dict[str, Any]]] = {
    "variable_repeated_past_the_output_limit": ("{{ v * 2 }}", {"v": "x" * 600_000}),
    "variable_as_a_format_string": (
        "{{ fmt.format(obj) }}",
        {"fmt": "{0.__class__.__mro__}", "obj": "x"},
    ),
    "variable_as_a_percent_format": ("{{ fmt % 1 }}", {"fmt": "%999999999d"}),
    "variable_width": ("{{ 'x' | center(width) }}", {"width": 10**9}),
    "variable_loop_bounds": (
        "{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}",
        {"n": 100_000},
    ),
}

#: Payloads in variables that must come out as plain text: (body, variables, expected).
INERT_ON_THE_SERVER: dict[str, tuple[str, dict[str, Any], str]] = {
    **INERT,
    "format_string_in_a_variable": (
        "{{ v }}",
        {"v": "{0.__class__.__mro__} %999999999s {:>999999999}"},
        "{0.__class__.__mro__} %999999999s {:>999999999}",
    ),
    "jinja_delimiters_in_a_variable": (
        "[{{ v }}]",
        {"v": "{% raw %}{# {{ #}{%- endraw %}"},
        "[{% raw %}{# {{ #}{%- endraw %}]",
    ),
    "control_characters_in_a_variable": (
        "{{ v }}",
        {"v": "\x00\x1b[2J\u202eevil\ufeff"},
        "\x00\x1b[2J\u202eevil\ufeff",
    ),
    "names_of_globals_as_variables": (
        "{{ range }} {{ cycler }} {{ namespace }}",
        {"range": "r", "cycler": "c", "namespace": "n"},
        "r c n",
    ),
    "large_variable_within_the_output_limit": ("{{ v }}", {"v": "x" * 900_000}, "x" * 900_000),
}

#: Every builtin filter that walks its input, inside loops nested 2, 3 or 4 deep (in turn,
#: so each filter and each depth is rendered once by the server).
NESTED_WALKS_ON_THE_SERVER: dict[str, tuple[str, dict[str, Any]]] = {
    name: (nested_walk(expression, NESTING_DEPTHS[index % len(NESTING_DEPTHS)]), {"d": WALK_DICT})
    for index, (name, expression) in enumerate(sorted(WALKING_FILTERS.items()))
}

#: Render-time bombs that run to the time limit: used to keep the server busy.
TIME_BOMBS = ("nested_loops", "triple_loop_output")
#: The server's render time limit.
RENDER_SECONDS = 0.5
#: Seconds a refused render may take, answer included, on a loaded machine: the limit plus
#: a generous slack (a render that is not bounded takes seconds to minutes).
BOUND = RENDER_SECONDS + 2.5
#: What a render stopped by a limit says: the time limit, or the work it may do in all.
LIMIT_NAMED = re.compile(
    r"render took longer than 0\.5 s and was stopped"
    r"|the template built or walked more than [\d,]+ characters or items in all"
)


def _id(app: str, name: str) -> str:
    return prompt_uuid("o", app, name, "development")


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IsolatedServer]:
    """A server child over a repository holding every payload: ``o/hostile/<name>`` (the
    payload as the body), ``o/incl/<name>`` (the payload after an include of
    ``o/incl/snippet``), ``o/walks/<filter>``, ``o/inert/<name>`` and ``o/calm/calm``. Its
    environment holds a canary (`CANARY_VARIABLE`) besides the API key."""
    repo = PromptRepo(tmp_path_factory.mktemp("hostile") / "repo")
    for name, (body, _) in {**ALL_REFUSED, **REFUSED_BY_VARIABLES}.items():
        repo.write_prompt("o", "hostile", name, body)
    for name, (body, _) in ALL_REFUSED.items():
        repo.write_prompt("o", "incl", name, '{% include "snippet" %}' + body)
    repo.write_prompt("o", "incl", "snippet", "SNIPPET ")
    for name, (body, _) in NESTED_WALKS_ON_THE_SERVER.items():
        repo.write_prompt("o", "walks", name, body)
    for name, (body, _, _) in INERT_ON_THE_SERVER.items():
        repo.write_prompt("o", "inert", name, body)
    repo.write_prompt("o", "calm", "calm", "calm {{ who }}\n")
    repo.commit("hostile prompts")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CANARY_VARIABLE, CANARY_VALUE)  # inherited by the child, and only it
        server = IsolatedServer(Path(repo.path), generate_key(test=True)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(isolated: IsolatedServer) -> IsolatedServer:
    """The isolated server, answering (started again if an earlier test froze it)."""
    isolated.ensure_responsive()
    return isolated


def _render(
    server: IsolatedServer, pid: str, variables: dict[str, Any], timeout: float = 10.0
) -> tuple[httpx.Response, float]:
    with server.client(timeout=timeout) as http:
        started = time.monotonic()
        try:
            response = http.post(f"/api/v1/prompts/{pid}/render", json={"variables": variables})
        except httpx.TimeoutException:
            pytest.fail(f"no answer within {timeout} s: the render is not bounded")
        return response, time.monotonic() - started


def _assert_clear(message: str, qualified_name: str) -> None:
    """The message names the prompt, says the render failed (and where, when known) and
    why, in a line, without leaking object addresses."""
    pattern = rf"prompt {re.escape(qualified_name)}: render failed( on line \d+)?: \S.{{4,}}"
    assert re.search(pattern, message), message
    assert " at 0x" not in message, message
    assert "\n" not in message and len(message) < 1000, message


def _assert_refused(response: httpx.Response, elapsed: float, qualified_name: str) -> None:
    assert response.status_code == 400, response.text[:500]
    error = response.json()["error"]
    assert response.json() == {"error": {"code": "RENDER_ERROR", "message": error["message"]}}
    _assert_clear(error["message"], qualified_name)
    assert elapsed < BOUND, f"refused after {elapsed:.2f} s"


@pytest.mark.parametrize("name", sorted(ALL_REFUSED))
def test_hostile_body_is_a_400_render_error_within_a_second(
    server: IsolatedServer, tally: Tally, name: str
) -> None:
    tally.add("hostile bodies rendered by the server")
    _, variables = ALL_REFUSED[name]
    response, elapsed = _render(server, _id("hostile", name), variables)
    _assert_refused(response, elapsed, f"o/hostile/{name}")


@pytest.mark.parametrize("name", sorted(REFUSED_BY_VARIABLES))
def test_hostile_use_of_variables_is_a_400_render_error_within_a_second(
    server: IsolatedServer, tally: Tally, name: str
) -> None:
    tally.add("hostile variables rendered by the server")
    _, variables = REFUSED_BY_VARIABLES[name]
    response, elapsed = _render(server, _id("hostile", name), variables)
    _assert_refused(response, elapsed, f"o/hostile/{name}")


@pytest.mark.parametrize("name", sorted(INERT_ON_THE_SERVER))
def test_payload_in_variables_is_rendered_as_data(
    server: IsolatedServer, tally: Tally, name: str
) -> None:
    tally.add("inert variable payloads rendered by the server")
    _, variables, expected = INERT_ON_THE_SERVER[name]
    response, _ = _render(server, _id("inert", name), variables)
    assert response.status_code == 200, response.text[:500]
    assert response.json()["rendered_body"] == expected


@pytest.mark.parametrize("name", sorted(ALL_REFUSED))
def test_sdk_render_of_a_hostile_prompt_with_an_include_raises_render_error(
    server: IsolatedServer, tally: Tally, name: str
) -> None:
    tally.add("hostile bodies rendered through PromptClient.render")
    _, variables = ALL_REFUSED[name]
    pid = _id("incl", name)
    with PromptClient(server.url, server.api_key, timeout=10.0, retry_count=0) as client:
        assert client.get(pid).needs_server_render()
        started = time.monotonic()
        with pytest.raises(RenderError) as caught:
            client.render(pid, variables)
        elapsed = time.monotonic() - started
    error = caught.value
    assert error.status_code == 400
    assert error.code == "RENDER_ERROR"
    _assert_clear(str(error), f"o/incl/{name}")
    assert elapsed < BOUND, f"refused after {elapsed:.2f} s"


@pytest.mark.parametrize("name", sorted(NESTED_WALKS_ON_THE_SERVER))
def test_filter_in_nested_loops_is_stopped_at_a_limit(
    server: IsolatedServer, tally: Tally, name: str
) -> None:
    tally.add("builtin filters in nested loops rendered by the server")
    _, variables = NESTED_WALKS_ON_THE_SERVER[name]
    response, elapsed = _render(server, _id("walks", name), variables)
    _assert_refused(response, elapsed, f"o/walks/{name}")
    assert LIMIT_NAMED.search(response.json()["error"]["message"]), response.text


@pytest.mark.parametrize("name", sorted(FORMAT_ESCAPES))
def test_format_escape_never_shows_the_servers_environment(
    server: IsolatedServer, tally: Tally, name: str
) -> None:
    # CVE-2025-27516: the child's environment holds the canary and PROMPTORY_API_KEYS.
    tally.add("sandbox escapes through |attr('format') tried on the server")
    _, variables = FORMAT_ESCAPES[name]
    response, _ = _render(server, _id("hostile", name), variables)
    assert response.status_code == 400, response.text[:500]
    for secret in (CANARY_VALUE, server.api_key, os.environ["PATH"]):
        assert secret not in response.text
    assert "refused by the sandbox" in response.json()["error"]["message"]


@pytest.fixture
def busy_server(tmp_path: Path) -> Iterator[IsolatedServer]:
    """A fresh server child holding the time bombs and one calm prompt, so no leftover of
    an earlier test competes with the bombs."""
    repo = PromptRepo(tmp_path / "repo")
    for name in TIME_BOMBS:
        repo.write_prompt("o", "hostile", name, REFUSED[name][0])
    repo.write_prompt("o", "calm", "calm", "calm {{ who }}\n")
    repo.commit("time bombs")
    keys = (generate_key(test=True), generate_key(test=True))
    with IsolatedServer(Path(repo.path), keys[0], other_keys=keys[1:]) as server:
        yield server


#: Renders of each time bomb sent at once by one key. That key renders `per_key` at a time
#: (1 on a 2-core machine), so its renders keep it busy for several seconds (each renders
#: for its whole time limit): the calm requests have seconds, not one render's 0.5 s, to be
#: answered while the key's renders run or wait, however loaded the machine.
BOMB_ROUNDS = 4


def test_other_requests_are_answered_while_bombs_render(busy_server: IsolatedServer) -> None:
    server = busy_server
    bombs = [(name, round_) for name in TIME_BOMBS for round_ in range(BOMB_ROUNDS)]
    finished: dict[tuple[str, int], float] = {}
    answers: dict[tuple[str, int], httpx.Response] = {}
    sent = {bomb: threading.Event() for bomb in bombs}

    def send(bomb: tuple[str, int]) -> None:
        name, _ = bomb
        with server.client(timeout=30.0) as http:
            http.event_hooks["request"] = [lambda request: sent[bomb].set()]
            answers[bomb] = http.post(
                f"/api/v1/prompts/{_id('hostile', name)}/render", json={"variables": {}}
            )
        finished[bomb] = time.monotonic()

    threads = [threading.Thread(target=send, args=(bomb,)) for bomb in bombs]
    for thread in threads:
        thread.start()
    for bomb in bombs:  # every bomb is on its way before the calm requests go
        assert sent[bomb].wait(5.0), f"{bomb} was not sent"
    # Another key: one key's renders wait for each other (its per-key cap), not other keys'.
    with server.client(key=server.other_keys[0], timeout=30.0) as http:
        fetched = http.get(f"/api/v1/prompts/{_id('calm', 'calm')}")
        rendered = http.post(
            f"/api/v1/prompts/{_id('calm', 'calm')}/render", json={"variables": {"who": "Ann"}}
        )
    answered = time.monotonic()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert fetched.status_code == 200
    assert rendered.json()["rendered_body"] == "calm Ann\n"
    # Order, not time: had the calm render waited behind the bombs sent before it (one queue
    # for all keys, or the bomb key taking every worker), it would come after the last.
    assert answered < max(finished.values()), "the calm requests waited for the bombs"
    assert {bomb: answers[bomb].status_code for bomb in bombs} == dict.fromkeys(bombs, 400)
