"""Includes that fail every render are reported by /api/v1/status, found in linear work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from promptory.server.includes import check_includes
from promptory.server.render import MAX_INCLUDE_DEPTH
from promptory.server.store import PromptStore
from support.gitrepo import PromptRepo
from support.servers import RunningServer


def test_status_reports_include_cycles_and_missing_includes(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> None:
    repo = prompt_repo
    repo.write_prompt("myorg", "myapp", "a", '{% include "b" %}')
    repo.write_prompt("myorg", "myapp", "b", '{% include "a" %}')
    repo.write_prompt("myorg", "myapp", "lost", '{% include "nowhere" %}')
    repo.write_prompt("myorg", "myapp", "uses_lost", '{% include "lost" %}')
    repo.commit()
    server = start_server(repo)
    with server.client() as client:
        status = client.get("/api/v1/status").json()
        listed = {p["name"] for p in client.get("/api/v1/prompts").json()["prompts"]}
    problems = {p["path"]: p["message"] for p in status["problems"]}
    assert problems["myorg/myapp/a.md"].startswith("include cycle: ")
    assert problems["myorg/myapp/b.md"].startswith("include cycle: ")
    assert "includes 'nowhere', which is not an active prompt" in problems["myorg/myapp/lost.md"]
    assert problems["myorg/myapp/uses_lost.md"] == problems["myorg/myapp/lost.md"]
    assert "myorg/myapp/coach_checkin.md" not in problems  # its include resolves
    assert {"a", "b", "lost", "uses_lost"} <= listed  # still served: GET works


def layered(repo: PromptRepo, layers: int, width: int) -> None:
    """`layers` layers of `width` prompts, each including every prompt of the next layer:
    width ** layers paths through the graph, width * width * layers includes."""
    for layer in range(layers):
        for column in range(width):
            below = "".join(
                f'{{% include "p{layer + 1}_{c}" %}}' for c in range(width) if layer + 1 < layers
            )
            repo.write_prompt("o", "a", f"p{layer}_{column}", below + "x\n")
    repo.commit()


def test_the_include_check_resolves_each_include_once(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    layered(repo, MAX_INCLUDE_DEPTH, 6)  # 60 prompts, 6 ** 10 paths
    snapshot = PromptStore(str(repo.path), prepare_in_background=False).snapshot
    check = check_includes(snapshot, snapshot.prompts())
    assert check.errors == {}
    assert check.visits == 6 * 6 * (MAX_INCLUDE_DEPTH - 1)


def test_nesting_too_deep_is_reported_for_the_roots_only(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    layered(repo, MAX_INCLUDE_DEPTH + 2, 2)
    snapshot = PromptStore(str(repo.path), prepare_in_background=False).snapshot
    check = check_includes(snapshot, snapshot.prompts())
    assert sorted(check.errors) == ["o/a/p0_0.md", "o/a/p0_1.md"]
    assert "includes nest deeper than 10 levels: p0_0 -> p1_" in check.errors["o/a/p0_0.md"].message
