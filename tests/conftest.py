"""Fixtures shared by every suite: a git repository of prompts, an API key, a running server.

Fixtures (use them by name in any test under ``tests/``):

* `api_key` -> str: an unscoped ``pm_test_`` key that every server fixture accepts.
* `prompt_repo` -> `support.gitrepo.PromptRepo`: a fresh git repository (function scope)
  holding the shipped example prompts in one commit: ``myorg/myapp/`` with
  ``meditation_script_relax`` (id ``550e8400-e29b-41d4-a716-446655440000``), ``greeting``
  (production and development), ``safety_preamble`` and ``coach_checkin`` (which includes
  it), and ``futureself/meditate/meditation_script_relax``. Commit more with
  ``prompt_repo.write_prompt(...)`` and ``prompt_repo.commit()``.
* `server` -> `support.servers.RunningServer`: a server over `prompt_repo` (function scope,
  polling every 0.05 s): ``server.url``, ``server.api_key``, ``server.client()`` (httpx),
  ``server.wait_for_commit(sha)`` after a commit, ``server.store`` for checks below HTTP.
* `shared_server` -> `RunningServer`: one server for the whole session over its own copy of
  the examples. Read only: never commit to ``shared_server.repo``.
* `start_server` -> a function ``start_server(repo, **settings)`` starting more servers
  (another repository, a rate limit, scoped keys, single-app mode), stopped at teardown.

End-of-run summaries (the security tally, the fault matrix, the soak) are recorded in
`support.summaries` and printed here, also when pytest-xdist runs the tests in workers.

Example::

    def test_greeting(server):
        with PromptClient(server.url, server.api_key) as client:
            assert client.get_by_name("myorg", "myapp", "greeting").environment == "production"
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from promptory.server.keys import generate_key
from support import summaries
from support.gitrepo import PromptRepo
from support.servers import RunningServer, copy_examples, running_server

#: The id of the spec's example prompt, myorg/myapp/meditation_script_relax.
MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"


def make_example_repo(path: Path) -> PromptRepo:
    """A repository at `path` holding the shipped examples in one commit."""
    repo = PromptRepo(path)
    copy_examples(repo)
    repo.commit("example prompts")
    return repo


@pytest.fixture(scope="session")
def api_key() -> str:
    """An unscoped test key accepted by every server fixture."""
    return generate_key(test=True)


@pytest.fixture
def prompt_repo(tmp_path: Path) -> PromptRepo:
    """A fresh repository of the example prompts (one commit)."""
    return make_example_repo(tmp_path / "prompts")


@pytest.fixture
def server(prompt_repo: PromptRepo, api_key: str) -> Iterator[RunningServer]:
    """A server over `prompt_repo`, stopped at teardown."""
    with running_server(prompt_repo, api_key) as running:
        yield running


@pytest.fixture(scope="session")
def shared_server(
    tmp_path_factory: pytest.TempPathFactory, api_key: str
) -> Iterator[RunningServer]:
    """One server for the session over the examples; do not commit to its repository."""
    repo = make_example_repo(tmp_path_factory.mktemp("shared") / "prompts")
    with running_server(repo, api_key) as running:
        yield running


@pytest.fixture
def start_server(api_key: str) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with any settings; all are stopped at teardown."""
    with ExitStack() as stack:

        def start(repo: PromptRepo, **settings: Any) -> RunningServer:
            return stack.enter_context(running_server(repo, api_key, **settings))

        yield start


# --- summaries across pytest-xdist workers --------------------------------------------------


def pytest_sessionfinish(session: pytest.Session) -> None:
    summaries.hand_over(session.config)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """A pytest-xdist worker finished (controller side): keep what it recorded."""
    summaries.take_over(getattr(node, "workeroutput", {}))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    summaries.report(terminalreporter)
