"""The git-native store: layout, committed content only, history, duplicates, re-indexing."""

from __future__ import annotations

import re
from pathlib import Path

import pygit2
import pytest

from promptory.server.store import PromptStore, RefNotFoundError, StoreError
from support.gitrepo import PromptRepo


@pytest.fixture
def repo(tmp_path: Path) -> PromptRepo:
    return PromptRepo(tmp_path / "repo")


def store_of(repo: PromptRepo, **options: object) -> PromptStore:
    return PromptStore(str(repo.path), prepare_in_background=False, **options)  # type: ignore[arg-type]


def names(store: PromptStore) -> list[str]:
    return [f"{r.org}/{r.app}/{r.name}" for r in store.snapshot.prompts()]


def test_multi_app_layout_serves_org_app_paths_and_ignores_other_files(repo: PromptRepo) -> None:
    repo.write_prompt("myorg", "myapp", "greeting")
    repo.write_prompt("myorg", "myapp", "nested", path="myorg/myapp/onboarding/deep/nested.md")
    repo.write("README.md", "# prompts\n")
    repo.write("myorg/README.md", "# org notes\n")
    repo.write("myorg/myapp/notes.txt", "not markdown\n")
    repo.write_prompt("x", "y", "hidden", path=".github/x/y/hidden.md")
    repo.write_prompt("myorg", "myapp", "draft", path="myorg/myapp/.drafts/draft.md")
    repo.commit()
    store = store_of(repo)
    assert names(store) == ["myorg/myapp/greeting", "myorg/myapp/nested"]
    assert store.snapshot.problems() == []


def test_single_app_mode_serves_every_markdown_file_as_that_app(repo: PromptRepo) -> None:
    repo.write_prompt("", "", "greeting", path="greeting.md")
    repo.write_prompt("", "", "other", path="sub/dir/other.md")
    repo.commit()
    store = store_of(repo, org="acme", app="bot")
    assert names(store) == ["acme/bot/greeting", "acme/bot/other"]


def test_single_app_mode_ignores_the_root_readme(repo: PromptRepo) -> None:
    repo.write("README.md", "# Our prompts\n")
    repo.write_prompt("", "", "greeting", path="greeting.md")
    repo.write_prompt("", "", "readme", path="docs/README.md")  # only the root one is docs
    repo.commit()
    store = store_of(repo, org="acme", app="bot")
    assert names(store) == ["acme/bot/README", "acme/bot/greeting"]
    assert store.snapshot.problems() == []


def test_only_committed_content_is_served(repo: PromptRepo) -> None:
    repo.write_prompt("myorg", "myapp", "greeting", "committed\n")
    repo.commit()
    repo.write_prompt("myorg", "myapp", "greeting", "work tree only\n")
    repo.write_prompt("myorg", "myapp", "uncommitted")
    store = store_of(repo)
    record = store.snapshot.find_by_name("myorg", "myapp", "greeting")
    assert record is not None
    assert record.served().file.body == "committed\n"
    assert store.snapshot.find_by_name("myorg", "myapp", "uncommitted") is None


def test_git_sha_is_the_last_commit_that_changed_the_file(repo: PromptRepo) -> None:
    repo.write_prompt("myorg", "myapp", "a")
    repo.write_prompt("myorg", "myapp", "b")
    first = repo.commit("add a and b")
    repo.write_prompt("myorg", "myapp", "b", "changed\n")
    second = repo.commit("change b")
    repo.write_prompt("myorg", "myapp", "c")
    repo.commit("add c")
    snapshot = store_of(repo).snapshot
    a = snapshot.find_by_name("myorg", "myapp", "a")
    b = snapshot.find_by_name("myorg", "myapp", "b")
    assert a is not None
    assert b is not None
    assert a.served().data["git_sha"] == first
    assert b.served().data["git_sha"] == second


def test_updated_at_is_the_commit_time_in_iso_8601_utc(repo: PromptRepo) -> None:
    repo.write_prompt("myorg", "myapp", "a")
    repo.commit()
    record = store_of(repo).snapshot.find_by_name("myorg", "myapp", "a")
    assert record is not None
    assert record.served().data["updated_at"] == "2026-09-21T14:13:20Z"


def test_a_change_merged_from_a_branch_is_dated_by_the_merge(repo: PromptRepo) -> None:
    repo.write_prompt("myorg", "myapp", "a")
    base = repo.commit("base")
    # A side branch changes `a`; main then merges it with a merge commit (first parent: main).
    repo.write_prompt("myorg", "myapp", "a", "from the branch\n")
    tree = repo.repo.index.write_tree()
    signature = repo.signature()
    side = repo.repo.create_commit(None, signature, signature, "side", tree, [pygit2.Oid(hex=base)])
    main_tip = repo.repo.create_commit(
        "HEAD", signature, signature, "merge", tree, [pygit2.Oid(hex=base), side]
    )
    record = store_of(repo).snapshot.find_by_name("myorg", "myapp", "a")
    assert record is not None
    assert record.served().data["git_sha"] == str(main_tip)


def test_incremental_reindex_keeps_the_records_of_unchanged_files(repo: PromptRepo) -> None:
    repo.write_prompt("myorg", "myapp", "kept")
    repo.write_prompt("myorg", "myapp", "changed")
    repo.commit()
    store = store_of(repo)
    kept = store.snapshot.find_by_name("myorg", "myapp", "kept")
    assert kept is not None
    repo.write_prompt("myorg", "myapp", "changed", "new body\n")
    repo.commit()
    assert store.refresh()
    assert store.snapshot.find_by_name("myorg", "myapp", "kept") is kept
    changed = store.snapshot.find_by_name("myorg", "myapp", "changed")
    assert changed is not None
    assert changed.served().file.body == "new body\n"


def test_reindex_after_several_commits_dates_each_file_by_its_own_commit(repo: PromptRepo) -> None:
    repo.write_prompt("myorg", "myapp", "a")
    repo.commit()
    store = store_of(repo)
    repo.write_prompt("myorg", "myapp", "b")
    second = repo.commit()
    repo.write_prompt("myorg", "myapp", "c")
    third = repo.commit()
    assert store.refresh()
    snapshot = store.snapshot
    b = snapshot.find_by_name("myorg", "myapp", "b")
    c = snapshot.find_by_name("myorg", "myapp", "c")
    assert b is not None
    assert c is not None
    assert b.served().data["git_sha"] == second
    assert c.served().data["git_sha"] == third


def test_rewritten_history_is_indexed_in_full(repo: PromptRepo) -> None:
    repo.write_prompt("myorg", "myapp", "a")
    first = repo.commit()
    repo.write_prompt("myorg", "myapp", "b")
    repo.commit()
    store = store_of(repo)
    repo.reset_hard(first)  # a force-push back to the first commit
    assert store.refresh()
    assert store.snapshot.commit == first
    assert names(store) == ["myorg/myapp/a"]


def test_deleted_file_is_no_longer_served(repo: PromptRepo) -> None:
    repo.write_prompt("myorg", "myapp", "a")
    repo.write_prompt("myorg", "myapp", "b")
    repo.commit()
    store = store_of(repo)
    repo.remove("myorg/myapp/b.md")
    repo.commit()
    store.refresh()
    assert names(store) == ["myorg/myapp/a"]
    assert not store.snapshot.has_app("myorg", "other")


def test_duplicate_id_serves_the_first_path_and_reports_the_second(repo: PromptRepo) -> None:
    same = "11111111-2222-4333-8444-555555555555"
    repo.write_prompt("myorg", "myapp", "alpha", id=same)
    repo.write_prompt("myorg", "myapp", "beta", id=same)
    repo.commit()
    snapshot = store_of(repo).snapshot
    record = snapshot.find_by_id(same)
    assert record is not None
    assert record.name == "alpha"
    assert snapshot.find_by_name("myorg", "myapp", "beta") is None
    [problem] = snapshot.problems()
    assert problem.path == "myorg/myapp/beta.md"
    assert f"duplicate id {same}" in problem.message
    assert "myorg/myapp/alpha.md is served instead" in problem.message


def test_duplicate_name_and_environment_serves_the_first_path(repo: PromptRepo) -> None:
    repo.write_prompt("myorg", "myapp", "greeting", "first\n")
    repo.write_prompt("myorg", "myapp", "x", "second\n", name="greeting", path="myorg/myapp/z.md")
    repo.commit()
    snapshot = store_of(repo).snapshot
    record = snapshot.find_by_name("myorg", "myapp", "greeting")
    assert record is not None
    assert record.path == "myorg/myapp/greeting.md"
    [problem] = snapshot.problems()
    assert problem.path == "myorg/myapp/z.md"
    assert "duplicate prompt myorg/myapp/greeting (development)" in problem.message


def test_a_bad_first_duplicate_leaves_the_second_served(repo: PromptRepo) -> None:
    repo.write("myorg/myapp/a.md", "---\nname: greeting\nversion: 1\ntags: wrong\n---\n")
    repo.write_prompt("myorg", "myapp", "greeting", "good\n")
    repo.commit()
    snapshot = store_of(repo).snapshot
    record = snapshot.find_by_name("myorg", "myapp", "greeting")
    assert record is not None
    assert record.path == "myorg/myapp/greeting.md"
    assert [p.path for p in snapshot.problems()] == ["myorg/myapp/a.md"]


def test_by_name_prefers_production_then_staging_then_development(repo: PromptRepo) -> None:
    repo.write_prompt("o", "a", "dev", name="p", environment="development")
    repo.write_prompt("o", "a", "stg", name="p", environment="staging")
    repo.commit()
    store = store_of(repo)
    found = store.snapshot.find_by_name("o", "a", "p")
    assert found is not None
    assert found.environment == "staging"
    repo.write_prompt("o", "a", "prod", name="p", environment="production")
    repo.commit()
    store.refresh()
    found = store.snapshot.find_by_name("o", "a", "p")
    assert found is not None
    assert found.environment == "production"


def test_inactive_variants_are_skipped_by_name_and_served_by_id(repo: PromptRepo) -> None:
    repo.write_prompt("o", "a", "prod", name="p", environment="production", active=False)
    repo.write_prompt("o", "a", "dev", name="p", environment="development")
    repo.commit()
    snapshot = store_of(repo).snapshot
    found = snapshot.find_by_name("o", "a", "p")
    assert found is not None
    assert found.environment == "development"
    assert snapshot.find_by_name("o", "a", "p", "production") is None
    inactive = snapshot.variant("o", "a", "p", "production")
    assert inactive is not None
    assert snapshot.find_by_id(inactive.id) is inactive


def test_unknown_ref_is_an_error_naming_it(repo: PromptRepo) -> None:
    repo.write_prompt("o", "a", "p")
    repo.commit()
    store = store_of(repo)
    for ref in ("no-such-branch", "HEAD~1", "deadbeef" * 5, "a/../b", ""):
        with pytest.raises(RefNotFoundError) as caught:
            store.snapshot_at(ref)
        assert caught.value.ref == ref


def test_snapshot_at_a_tag_or_commit_is_pinned_and_the_served_branch_is_not(
    repo: PromptRepo,
) -> None:
    repo.write_prompt("o", "a", "p", "old\n")
    old = repo.commit()
    repo.tag("v1", annotated=True)
    repo.write_prompt("o", "a", "p", "new\n")
    new = repo.commit()
    store = store_of(repo)
    for ref in ("v1", old, old[:10], old[:7].upper()):
        resolved = store.snapshot_at(ref)
        assert resolved.snapshot.commit == old
        assert resolved.pinned is True
        record = resolved.snapshot.find_by_name("o", "a", "p")
        assert record is not None
        assert record.served().file.body == "old\n"
    for ref in ("HEAD", "main", "refs/heads/main"):
        resolved = store.snapshot_at(ref)
        assert resolved.snapshot.commit == new
        assert resolved.pinned is False


def test_store_follows_a_branch_given_as_ref(repo: PromptRepo) -> None:
    repo.write_prompt("o", "a", "p", "main\n")
    first = repo.commit()
    repo.branch("release", first)
    repo.write_prompt("o", "a", "p", "newer on main\n")
    repo.commit()
    store = store_of(repo, ref="release")
    assert store.snapshot.commit == first


def test_empty_repository_serves_nothing_until_the_first_commit(repo: PromptRepo) -> None:
    store = store_of(repo)
    assert store.snapshot.commit is None
    assert store.snapshot.file_count == 0
    repo.write_prompt("o", "a", "p")
    sha = repo.commit()
    assert store.refresh()
    assert store.snapshot.commit == sha


def test_a_path_that_is_not_a_repository_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a git repository"):
        PromptStore(str(tmp_path / "nothing"))


def test_failed_refresh_keeps_the_current_snapshot(repo: PromptRepo) -> None:
    repo.write_prompt("o", "a", "p")
    first = repo.commit()
    repo.branch("feature", first)
    store = store_of(repo, ref="feature")
    repo.repo.branches.local.delete("feature")
    with pytest.raises(RefNotFoundError):
        store.refresh()
    assert store.snapshot.commit == first


def test_ids_are_stable_across_stores(repo: PromptRepo) -> None:
    repo.write_prompt("o", "a", "p", environment="staging")
    repo.commit()
    first = store_of(repo).snapshot.find_by_name("o", "a", "p")
    second = store_of(repo).snapshot.find_by_name("o", "a", "p")
    assert first is not None
    assert second is not None
    assert first.id == second.id
    assert re.fullmatch(r"[0-9a-f-]{36}", first.id)


def test_a_newline_in_a_file_name_cannot_forge_a_log_line(
    repo: PromptRepo, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "o/a/x\nCRITICAL promptory.server forged entry.md"
    repo.write_prompt("o", "a", "x", path=forged)
    repo.commit()
    with caplog.at_level("WARNING", logger="promptory.server"):
        store_of(repo)
    [message] = [r.getMessage() for r in caplog.records if "not served" in r.getMessage()]
    assert "\n" not in message
    assert "o/a/x\\nCRITICAL" in message
