"""Ids belong to their app: a file of another app cannot take, shadow or break them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from promptory.server.files import prompt_uuid
from promptory.server.keys import KeyRecord, generate_key
from promptory.server.store import PromptStore
from support.gitrepo import PromptRepo
from support.servers import RunningServer

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"  # explicit in the examples
GREETING_ID = prompt_uuid("myorg", "myapp", "greeting", "production")  # derived
OTHER_ID = "11111111-2222-4333-8444-555555555555"


def store_of(repo: PromptRepo) -> PromptStore:
    return PromptStore(str(repo.path), prepare_in_background=False)


def attack(repo: PromptRepo) -> None:
    """An org sorting before the victim's claims the victim's derived and explicit ids."""
    repo.write_prompt("aaa", "evil", "takes_derived", "attacker text\n", id=GREETING_ID)
    repo.write_prompt("aaa", "evil", "takes_explicit", "attacker text\n", id=MEDITATION_ID)
    repo.commit("claim another app's ids")


def test_another_apps_claims_change_nothing_the_victim_reads(prompt_repo: PromptRepo) -> None:
    attack(prompt_repo)
    snapshot = store_of(prompt_repo).snapshot
    for prompt_id, name in ((GREETING_ID, "greeting"), (MEDITATION_ID, "meditation_script_relax")):
        record = snapshot.find_by_id(prompt_id)
        assert record is not None
        assert (record.org, record.app, record.name) == ("myorg", "myapp", name)
        assert snapshot.find_by_name("myorg", "myapp", name) is record
    assert snapshot.find_by_name("aaa", "evil", "takes_derived") is None
    assert snapshot.find_by_name("aaa", "evil", "takes_explicit") is None


def test_both_apps_see_the_conflict_in_their_problems(prompt_repo: PromptRepo) -> None:
    attack(prompt_repo)
    snapshot = store_of(prompt_repo).snapshot
    problems = {p.path: p.message for p in snapshot.problems()}
    assert "derives from its name" in problems["aaa/evil/takes_derived.md"]
    assert "claimed it first" in problems["aaa/evil/takes_explicit.md"]
    assert "keeps it" in problems["myorg/myapp/greeting.md"]
    assert "keeps it" in problems["myorg/myapp/meditation_script_relax.md"]
    victim = {p.path for p in snapshot.problems(lambda org, app: (org, app) == ("myorg", "myapp"))}
    assert victim == {"myorg/myapp/greeting.md", "myorg/myapp/meditation_script_relax.md"}
    attacker = snapshot.problems(lambda org, app: org == "aaa")
    assert {p.path for p in attacker} == {"aaa/evil/takes_derived.md", "aaa/evil/takes_explicit.md"}
    # Neither side is told the other's paths.
    assert not any("myorg" in p.message for p in attacker)


def test_the_older_claim_keeps_an_explicit_id_whatever_the_path_order(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("zzz", "owner", "p", "first\n", id=OTHER_ID)
    repo.commit()
    for number in range(3):
        repo.write_prompt("zzz", "owner", f"more{number}")
        repo.commit()
    repo.write_prompt("aaa", "late", "p", "second\n", id=OTHER_ID)
    repo.commit()
    store = store_of(repo)
    record = store.snapshot.find_by_id(OTHER_ID)
    assert record is not None and record.org == "zzz"
    # More commits change nothing: the holder's run grows as fast as the newcomer's.
    for number in range(3):
        repo.write_prompt("aaa", "late", f"x{number}")
        repo.commit()
        assert store.refresh()
        record = store.snapshot.find_by_id(OTHER_ID)
        assert record is not None and record.org == "zzz"


def test_moving_a_file_inside_its_app_keeps_the_claim(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("zzz", "owner", "p", "first\n", id=OTHER_ID)
    repo.commit()
    repo.write_prompt("aaa", "late", "p", "second\n", id=OTHER_ID)
    repo.commit()
    repo.remove("zzz/owner/p.md")
    repo.write_prompt("zzz", "owner", "p", "first\n", id=OTHER_ID, path="zzz/owner/sub/p.md")
    repo.commit()
    record = store_of(repo).snapshot.find_by_id(OTHER_ID)
    assert record is not None and record.path == "zzz/owner/sub/p.md"


def test_claims_made_in_the_same_commit_leave_the_id_to_no_app(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("a", "one", "p", id=OTHER_ID)
    repo.write_prompt("b", "two", "p", id=OTHER_ID)
    repo.commit()
    snapshot = store_of(repo).snapshot
    assert snapshot.find_by_id(OTHER_ID) is None
    assert snapshot.find_by_name("a", "one", "p") is None
    messages = [p.message for p in snapshot.problems()]
    assert len(messages) == 2
    assert all("since the same commit" in message for message in messages)


def test_an_explicit_claim_of_a_future_derived_id_loses_when_the_prompt_appears(
    tmp_path: Path,
) -> None:
    repo = PromptRepo(tmp_path / "repo")
    future = prompt_uuid("victim", "app", "later", "development")
    repo.write_prompt("aaa", "evil", "squat", id=future)
    repo.commit()
    store = store_of(repo)
    repo.write_prompt("victim", "app", "later", "mine\n")
    repo.commit()
    assert store.refresh()
    record = store.snapshot.find_by_id(future)
    assert record is not None and record.org == "victim"


def test_a_conflict_costs_one_history_step_per_new_commit(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("zzz", "owner", "p", id=OTHER_ID)
    repo.commit()
    for number in range(20):
        repo.write_prompt("zzz", "owner", f"q{number}")
        repo.commit()
    repo.write_prompt("aaa", "late", "p", id=OTHER_ID)
    repo.commit()
    store = store_of(repo)
    claims = store._builder.claims
    assert 20 < claims.steps < 30  # the owner's 22 commits and the newcomer's one
    before = claims.steps
    repo.write_prompt("zzz", "owner", "r")
    repo.commit()
    assert store.refresh()
    assert claims.steps - before == 4  # one step per app, each meeting its memo


# --- over HTTP, with scoped keys -------------------------------------------------------------


@pytest.fixture
def attacked(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> tuple[RunningServer, str, str]:
    attack(prompt_repo)
    victim, attacker = generate_key(), generate_key()
    server = start_server(
        prompt_repo,
        keys=[
            KeyRecord.for_key(victim, scope="myorg/myapp"),
            KeyRecord.for_key(attacker, scope="aaa"),
        ],
    )
    return server, victim, attacker


@pytest.mark.parametrize("prompt_id", [GREETING_ID, MEDITATION_ID])
def test_victim_reads_its_ids_and_names_as_before(
    attacked: tuple[RunningServer, str, str], prompt_id: str
) -> None:
    server, victim, _ = attacked
    for key in (server.api_key, victim):
        with server.client(key) as client:
            answer = client.get(f"/api/v1/prompts/{prompt_id}")
            assert answer.status_code == 200
            assert answer.json()["org"] == "myorg"
            assert "attacker" not in answer.json()["body"]
            by_name = client.get(f"/api/v1/prompts/by-name/myorg/myapp/{answer.json()['name']}")
            assert by_name.status_code == 200
            rendered = client.post(f"/api/v1/prompts/{prompt_id}/render", json={})
            assert rendered.status_code == 200


def test_status_reports_the_conflict_to_each_apps_keys(
    attacked: tuple[RunningServer, str, str],
) -> None:
    server, victim, attacker = attacked
    with server.client(victim) as client:
        mine = {p["path"] for p in client.get("/api/v1/status").json()["problems"]}
    with server.client(attacker) as client:
        theirs = {p["path"] for p in client.get("/api/v1/status").json()["problems"]}
    assert mine == {"myorg/myapp/greeting.md", "myorg/myapp/meditation_script_relax.md"}
    assert theirs == {"aaa/evil/takes_derived.md", "aaa/evil/takes_explicit.md"}
