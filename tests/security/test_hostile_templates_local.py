"""Hostile bodies on the SDK's local path, and in `promptory lint`.

What the SDK does with a prompt body on its own: `Prompt.needs_server_render()` (asked by
`PromptClient.render()` before rendering locally), `Prompt.variables`, `Prompt.render()` and
`Prompt.render(strict=True)`; the last three read the body's syntax tree for its variables.
Reading the tree must never evaluate the template: every payload of the corpus goes through
the whole sequence, the analysis ends within `BOUND` and each render within its time limit
plus a generous slack (`BOUND` too), in a `RenderError`.
(`sdk/test_hostile_templates.py` renders the corpus without the analysis.) `promptory lint`
reads the variables of every file of a repository, so it must end on the corpus too.

All of it runs in memory-capped children (`isolation.AnalysisWorker`, `run_module`): a
payload the analysis evaluates fails its test after a few seconds instead of hanging or
exhausting the test run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.gitrepo import PromptRepo

from .conftest import Tally
from .isolation import AnalysisWorker, run_module
from .test_hostile_templates_server import ALL_REFUSED

#: Seconds the parent waits for the child's answer before calling the body a hang.
PATIENCE = 10.0
#: Seconds the analysis, and each render, may take on a loaded machine: the render's time
#: limit (0.5 s) plus a generous slack. An unbounded one takes seconds to minutes.
BOUND = 0.5 + 2.5


@pytest.fixture(scope="module")
def worker() -> Iterator[AnalysisWorker]:
    with AnalysisWorker() as running:
        yield running


@pytest.mark.parametrize("name", sorted(ALL_REFUSED))
def test_local_analysis_and_render_of_a_hostile_body_end_within_the_limit(
    worker: AnalysisWorker, tally: Tally, name: str
) -> None:
    tally.add("hostile bodies analysed and rendered by the SDK")
    body, variables = ALL_REFUSED[name]
    answer = worker.run(name, body, variables, timeout=PATIENCE)
    assert "crash" not in answer, answer
    assert answer["needs_server"] is False
    assert answer["seconds"] < BOUND, answer
    for mode in ("render", "strict"):
        outcome = answer[mode]
        assert outcome.get("error_type") in {"RenderError", "UndefinedVariableError"}, outcome
        assert f"o/a/{name}" in outcome["message"]
        assert outcome["seconds"] < BOUND, (mode, outcome)


def test_lint_of_a_repository_of_hostile_bodies_ends_without_a_crash(
    tmp_path: Path, tally: Tally
) -> None:
    # `promptory lint` reads the variables of every body (for its variable checks), in CI
    # or a pre-commit hook, on whatever a pull request holds.
    repo = PromptRepo(tmp_path / "repo")
    for name, (body, _) in ALL_REFUSED.items():
        repo.write_prompt("o", "a", name, body)
    tally.add("hostile bodies linted", len(ALL_REFUSED))
    result = run_module("promptory", "lint", str(repo.path), timeout=10.0)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode in (0, 1), result.stderr[-2000:]
