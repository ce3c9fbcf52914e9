"""``?ref=`` reads only what the served ref holds: its tags and its commits, never more."""

from __future__ import annotations

from collections.abc import Callable

import pygit2
import pytest

from support.gitrepo import PromptRepo
from support.servers import RunningServer

GREETING = "/api/v1/prompts/by-name/myorg/myapp/greeting"


@pytest.fixture
def release(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> tuple[RunningServer, dict[str, str]]:
    """A server following `release`, beside a `main` that moved on, a reset-away commit, a
    stash of work-tree edits and a tag on main only."""
    repo = prompt_repo
    shas = {"served": repo.head}
    repo.branch("release")
    repo.write_prompt("myorg", "myapp", "greeting", "unreleased\n", environment="production")
    shas["main"] = repo.commit("not released yet")
    repo.tag("on-main-only")
    repo.write_prompt("myorg", "myapp", "greeting", "reset away\n", environment="production")
    shas["reset"] = repo.commit("a mistake")
    repo.reset_hard(shas["main"])
    repo.write_prompt("myorg", "myapp", "greeting", "work tree edit\n", environment="production")
    signature = pygit2.Signature("a", "a@example.com", 1_790_000_000, 0)
    shas["stash"] = str(repo.repo.stash(signature, "wip"))
    return start_server(repo, ref="release"), shas


def answer(server: RunningServer, ref: str) -> tuple[int, str]:
    with server.client() as client:
        response = client.get(GREETING, params={"ref": ref})
    return response.status_code, response.json().get("error", {}).get("code", "")


@pytest.mark.parametrize(
    "ref",
    ["stash", "stash@{0}", "main", "refs/heads/main", "on-main-only", "refs/stash"],
)
def test_a_ref_outside_the_served_history_is_not_found(
    release: tuple[RunningServer, dict[str, str]], ref: str
) -> None:
    server, _ = release
    assert answer(server, ref) == (404, "REF_NOT_FOUND")


@pytest.mark.parametrize("ref", ["W/", "a.lock", "x/.y", "tag.", "a/b/"])
def test_a_ref_git_refuses_as_a_name_is_not_found_never_a_500(
    release: tuple[RunningServer, dict[str, str]], ref: str
) -> None:
    server, _ = release
    assert answer(server, ref) == (404, "REF_NOT_FOUND")


@pytest.mark.parametrize("which", ["main", "reset", "stash"])
def test_a_commit_id_outside_the_served_history_is_not_found_even_in_full(
    release: tuple[RunningServer, dict[str, str]], which: str
) -> None:
    server, shas = release
    assert answer(server, shas[which]) == (404, "REF_NOT_FOUND")
    assert answer(server, shas[which][:12]) == (404, "REF_NOT_FOUND")


def test_an_unreachable_commit_answers_like_an_unknown_one(
    release: tuple[RunningServer, dict[str, str]],
) -> None:
    server, shas = release
    with server.client() as client:
        unreachable = client.get(GREETING, params={"ref": shas["main"]}).json()
        unknown = client.get(GREETING, params={"ref": "0" * 40}).json()
    assert unreachable["error"]["message"].replace(shas["main"], "X") == unknown["error"][
        "message"
    ].replace("0" * 40, "X")


def test_a_short_commit_id_needs_seven_hex_digits(
    release: tuple[RunningServer, dict[str, str]],
) -> None:
    server, shas = release
    served = shas["served"]
    assert answer(server, served[:6]) == (404, "REF_NOT_FOUND")
    assert answer(server, served[:7]) == (200, "")
    assert answer(server, served) == (200, "")


def test_the_served_branch_and_its_older_commits_and_tags_are_readable(
    release: tuple[RunningServer, dict[str, str]],
) -> None:
    server, shas = release
    repo = server.repo
    repo.repo.references.create("refs/tags/v-release", pygit2.Oid(hex=shas["served"]))
    assert answer(server, "release") == (200, "")
    assert answer(server, "v-release") == (200, "")


def test_no_ref_reads_turns_ref_off_with_400(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(prompt_repo, ref_reads=False)
    head = prompt_repo.head
    for path, method in ((GREETING, "GET"), ("/api/v1/prompts", "GET")):
        with server.client() as client:
            response = client.request(method, path, params={"ref": head})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "REF_READS_DISABLED"
    with server.client() as client:
        assert client.get(GREETING).status_code == 200


def test_reachability_is_asked_once_per_served_commit(
    release: tuple[RunningServer, dict[str, str]],
) -> None:
    server, shas = release
    store = server.store
    for _ in range(5):
        assert answer(server, shas["main"]) == (404, "REF_NOT_FOUND")
    assert list(store._reachability) == [(shas["served"], shas["main"])]
