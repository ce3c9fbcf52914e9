"""Bodies Jinja reads but Python cannot compile, committed to a repository.

25 nested ``{% for %}`` blocks or 300 nested parentheses made Python's compiler raise
`SyntaxError` or `RecursionError`; the listing and ``/status`` answered 500 for the whole
org, with a long traceback logged per request. Such a file is a bad file like any other:
skipped, reported in ``/status`` with the reason, and the rest served. `promptory lint`
reports it as an error on that file. (The SDK's `RenderError` for them is tested with the
rest of the hostile corpus, in ``sdk/test_hostile_templates.py``.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptory.server.files import prompt_uuid
from promptory.server.keys import generate_key
from sdk.hostile_corpus import UNCOMPILABLE
from support.gitrepo import PromptRepo

from .conftest import Tally
from .isolation import IsolatedServer, run_module

#: What the problem reported for each file says.
REASON = re.compile(r"template too deeply nested to compile")
#: Bytes the server may log while answering the requests of one test: a line or two per
#: problem (Python 3.13 may add a short note per file compiled), not a traceback per
#: request.
LOG_BUDGET = 20_000


def _repository(root: Path) -> PromptRepo:
    repo = PromptRepo(root / "repo")
    repo.write_prompt("o", "a", "good", "Hello {{ who }}\n")
    for name, body in UNCOMPILABLE.items():
        repo.write_prompt("o", "a", name, body)
    repo.commit("prompts Python cannot compile")
    return repo


@pytest.fixture(scope="module", params=["prepare", "lazy"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IsolatedServer]:
    """A server over the good prompt and every uncompilable body; records prepared in the
    background (as deployed) or only when a request needs them."""
    repo = _repository(tmp_path_factory.mktemp("uncompilable"))
    with IsolatedServer(
        Path(repo.path), generate_key(test=True), prepare_in_background=request.param == "prepare"
    ) as running:
        yield running


def _get(server: IsolatedServer, path: str) -> httpx.Response:
    with server.client(timeout=10.0) as http:
        return http.get(path)


def test_listing_answers_and_holds_only_the_good_prompt(server: IsolatedServer) -> None:
    for _ in range(3):  # every time, not only the first
        listed = _get(server, "/api/v1/prompts")
        assert listed.status_code == 200, listed.text[:500]
        assert [p["name"] for p in listed.json()["prompts"]] == ["good"]


def test_status_reports_each_file_with_the_reason(server: IsolatedServer, tally: Tally) -> None:
    tally.add("uncompilable bodies reported by the server", len(UNCOMPILABLE))
    status = _get(server, "/api/v1/status")
    assert status.status_code == 200, status.text[:500]
    problems = {problem["path"]: problem["message"] for problem in status.json()["problems"]}
    assert set(problems) == {f"o/a/{name}.md" for name in UNCOMPILABLE}
    for path, message in problems.items():
        assert REASON.search(message), (path, message)


def test_good_prompt_is_served_and_rendered_and_the_bad_ones_are_not(
    server: IsolatedServer,
) -> None:
    good = prompt_uuid("o", "a", "good", "development")
    with server.client(timeout=10.0) as http:
        rendered = http.post(f"/api/v1/prompts/{good}/render", json={"variables": {"who": "Ann"}})
        assert rendered.json()["rendered_body"] == "Hello Ann\n"
        for name in UNCOMPILABLE:
            assert http.get(f"/api/v1/prompts/by-name/o/a/{name}").status_code == 404
            pid = prompt_uuid("o", "a", name, "development")
            assert http.post(f"/api/v1/prompts/{pid}/render", json={}).status_code == 404


def test_requests_over_uncompilable_files_log_no_tracebacks(server: IsolatedServer) -> None:
    before = len(server.log_text())
    for path in ("/api/v1/prompts", "/api/v1/status", "/api/v1/prompts/by-name/o/a/good"):
        assert _get(server, path).status_code == 200
    logged = server.log_text()[before:]
    assert "Exception in ASGI application" not in logged, logged[-2000:]
    assert len(logged) < LOG_BUDGET, logged[-2000:]


def test_lint_reports_each_file_as_an_error_and_ends(tmp_path: Path, tally: Tally) -> None:
    repo = _repository(tmp_path)
    tally.add("uncompilable bodies linted", len(UNCOMPILABLE))
    result = run_module("promptory", "lint", str(repo.path), timeout=30.0)
    # The summary line, and at most the interpreter's note of an exception it ignored while
    # unwinding a RecursionError (Python 3.13 prints one for a generator closed at the
    # limit): no crash, no traceback of thousands of frames.
    assert len(result.stderr) < 2000, result.stderr[-2000:]
    assert f"{len(UNCOMPILABLE)} errors" in result.stderr
    assert result.returncode == 1, (result.stdout, result.stderr[-2000:])
    lines: dict[str, Any] = {}
    for line in result.stdout.splitlines():
        path, _, rest = line.partition(":")
        lines.setdefault(path, []).append(rest)
    for name in UNCOMPILABLE:
        [finding] = lines[f"o/a/{name}.md"]
        assert "error" in finding and REASON.search(finding), finding
    assert "o/a/good.md" not in lines
