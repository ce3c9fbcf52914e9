"""New commits are served without a restart, re-indexed incrementally; failures keep serving."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pygit2
import pytest

from sdk.conftest import wait_until
from support.gitrepo import PromptRepo
from support.servers import RunningServer

GREETING = "/api/v1/prompts/by-name/myorg/myapp/greeting"


def test_new_commit_is_served_within_two_seconds_without_restart(server: RunningServer) -> None:
    server.repo.write_prompt("myorg", "myapp", "fresh", "Just committed.\n")
    sha = server.repo.commit("add fresh")
    started = time.monotonic()
    with server.client() as client:
        deadline = started + 2.0
        while True:
            response = client.get("/api/v1/prompts/by-name/myorg/myapp/fresh")
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
    assert response.status_code == 200
    assert response.json()["git_sha"] == sha
    assert time.monotonic() - started < 2.0


def test_uncommitted_changes_are_never_served(server: RunningServer) -> None:
    repo = server.repo
    repo.write_prompt("myorg", "myapp", "greeting", "committed\n", environment="production")
    # The work tree then holds a draft of the same file, neither staged nor committed: the
    # commit makes the server read this very file again, and only the commit may be served.
    draft = "---\nversion: 9.9.9\nenvironment: production\n---\ndraft\n"
    (repo.path / "myorg/myapp/greeting.md").write_text(draft, encoding="utf-8")
    server.wait_for_commit(repo.commit("change the greeting"))
    with server.client() as client:
        served = client.get(GREETING).json()
    assert (served["body"], served["version"]) == ("committed\n", "1.0.0")


def test_deleted_prompt_is_404_after_the_commit(server: RunningServer) -> None:
    server.repo.remove("myorg/myapp/coach_checkin.md")
    server.wait_for_commit(server.repo.commit("remove coach_checkin"))
    with server.client() as client:
        assert client.get("/api/v1/prompts/by-name/myorg/myapp/coach_checkin").status_code == 404


def test_reindex_keeps_the_records_of_unchanged_prompts(server: RunningServer) -> None:
    with server.client() as client:
        client.get(GREETING)
    before = server.store.snapshot.find_by_name("myorg", "myapp", "greeting")
    server.repo.write_prompt("myorg", "myapp", "another")
    server.wait_for_commit(server.repo.commit())
    after = server.store.snapshot.find_by_name("myorg", "myapp", "greeting")
    assert after is before
    assert after is not None
    assert after.prepared


def test_unreadable_ref_keeps_the_last_commit_served(
    prompt_repo: PromptRepo,
    start_server: Callable[..., RunningServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    prompt_repo.branch("release")
    served = prompt_repo.head
    server = start_server(prompt_repo, ref="release")
    with caplog.at_level("ERROR", logger="promptory.server"):
        prompt_repo.repo.branches.local.delete("release")
        # A poll has met the missing ref (it says so once) before serving is checked.
        wait_until(
            lambda: any("cannot read" in r.getMessage() for r in caplog.records),
            what="a poll to fail on the deleted ref",
        )
    with server.client() as client:
        assert client.get(GREETING).status_code == 200
    assert httpx.get(f"{server.url}/health").json()["commit"] == served
    prompt_repo.branch("release")
    prompt_repo.write_prompt("myorg", "myapp", "back")
    sha = prompt_repo.commit()
    prompt_repo.branch("release", sha)
    server.wait_for_commit(sha)


def test_followed_branch_moves_are_served(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> None:
    prompt_repo.branch("release")
    server = start_server(prompt_repo, ref="release")
    prompt_repo.write_prompt(
        "myorg", "myapp", "greeting", "on main only\n", environment="production"
    )
    on_main = prompt_repo.commit()
    # A marker commit on the followed branch, made after the one on main: once it is
    # served, a poll has read the refs since main moved (and did not take main's commit).
    release = prompt_repo.repo.revparse_single("release").peel(pygit2.Commit)
    signature = prompt_repo.signature()
    marker = prompt_repo.repo.create_commit(
        "refs/heads/release", signature, signature, "marker", release.tree_id, [release.id]
    )
    server.wait_for_commit(str(marker), timeout=10)
    with server.client() as client:
        assert client.get(GREETING).json()["body"] != "on main only\n"
        prompt_repo.branch("release", on_main)
        server.wait_for_commit(on_main)
        assert client.get(GREETING).json()["body"] == "on main only\n"
