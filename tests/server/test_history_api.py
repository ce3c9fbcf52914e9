"""GET /api/v1/prompts/{id}/history and /diff: the commits that changed a prompt's file, and
what changed between two of them; scoped, bounded, documented."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from promptory.server.keys import KeyRecord, generate_key
from promptory.server.revisions import MAX_DIFF_LINES, MAX_HISTORY, Revisions
from support.gitrepo import PromptRepo
from support.schema import validate
from support.servers import RunningServer

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"
PATH = "myorg/myapp/greeting.md"


UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def _greeting_id(client: httpx.Client) -> str:
    return str(client.get("/api/v1/prompts/by-name/myorg/myapp/greeting").json()["id"])


def _two_more_versions(server: RunningServer) -> tuple[str, str, str]:
    """Commit greeting 2.1.0 and 2.2.0 (and an unrelated change between); returns the three
    commits that changed greeting, oldest first."""
    repo = server.repo
    first = repo.head
    text = (repo.path / PATH).read_text()
    repo.write(PATH, text.replace("version: 2.0.0", "version: 2.1.0").replace("Hey", "Hello"))
    second = repo.commit("Greeting 2.1.0\n\nWarmer words.")
    repo.write_prompt("myorg", "myapp", "unrelated")
    repo.commit("An unrelated prompt")
    repo.write(PATH, (repo.path / PATH).read_text().replace("version: 2.1.0", "version: 2.2.0"))
    third = repo.commit("Greeting 2.2.0")
    server.wait_for_commit(third)
    return first, second, third


def test_history_lists_the_commits_that_changed_the_file_newest_first(
    server: RunningServer,
) -> None:
    first, second, third = _two_more_versions(server)
    with server.client() as client:
        prompt_id = _greeting_id(client)
        answer = client.get(f"/api/v1/prompts/{prompt_id}/history")
    assert answer.status_code == 200
    data = answer.json()
    assert data["path"] == PATH
    assert data["commit"] == third
    assert [r["sha"] for r in data["revisions"]] == [third, second, first]
    assert [r["version"] for r in data["revisions"]] == ["2.2.0", "2.1.0", "2.0.0"]
    assert data["revisions"][1]["message"] == "Greeting 2.1.0\n\nWarmer words."
    assert data["revisions"][1]["author"] == "Prompt Author"
    assert data["revisions"][1]["email"] == "author@example.com"
    assert data["revisions"][1]["date"].endswith("Z")
    assert data["truncated"] is False


def test_history_limit_bounds_the_answer_and_says_it_is_truncated(server: RunningServer) -> None:
    _, _, third = _two_more_versions(server)
    with server.client() as client:
        prompt_id = _greeting_id(client)
        data = client.get(f"/api/v1/prompts/{prompt_id}/history?limit=1").json()
        assert [r["sha"] for r in data["revisions"]] == [third]
        assert data["truncated"] is True
        for bad in ("0", str(MAX_HISTORY + 1), "x", "-1"):
            answer = client.get(f"/api/v1/prompts/{prompt_id}/history?limit={bad}")
            assert answer.status_code == 400
            assert answer.json()["error"]["code"] == "INVALID_QUERY"


def test_history_at_a_ref_starts_from_that_commit(server: RunningServer) -> None:
    first, second, _ = _two_more_versions(server)
    with server.client() as client:
        prompt_id = _greeting_id(client)
        data = client.get(f"/api/v1/prompts/{prompt_id}/history?ref={second}").json()
    assert [r["sha"] for r in data["revisions"]] == [second, first]


def test_history_walk_is_bounded_by_max_history(tmp_path: Any) -> None:
    repo = PromptRepo(tmp_path / "repo")
    for version in range(MAX_HISTORY + 5):
        repo.write_prompt("o", "a", "p", version=f"1.0.{version}")
        repo.commit(f"v{version}")
    history = Revisions(str(repo.path), resolve=str).history(
        repo.head, "o/a/p.md", MAX_HISTORY + 50
    )
    assert len(history.revisions) == MAX_HISTORY
    assert history.truncated
    assert history.revisions[0].version == f"1.0.{MAX_HISTORY + 4}"


def test_diff_shows_fields_front_matter_and_body(server: RunningServer) -> None:
    first, second, third = _two_more_versions(server)
    with server.client() as client:
        prompt_id = _greeting_id(client)
        answer = client.get(f"/api/v1/prompts/{prompt_id}/diff?from={first}&to={second}")
        default_to = client.get(f"/api/v1/prompts/{prompt_id}/diff?from={first}").json()
    assert answer.status_code == 200
    data = answer.json()
    assert data["from"] == {"sha": first, "version": "2.0.0", "exists": True}
    assert data["to"] == {"sha": second, "version": "2.1.0", "exists": True}
    assert {"field": "version", "from": "2.0.0", "to": "2.1.0"} in data["fields"]
    assert "-version: 2.0.0\n+version: 2.1.0\n" in data["front_matter_diff"]
    assert any(line.startswith("+") and "Hello" in line for line in data["body_diff"].splitlines())
    assert default_to["to"]["sha"] == third


def test_diff_of_a_file_absent_at_one_side_says_so(server: RunningServer) -> None:
    repo = server.repo
    before = repo.head
    repo.write_prompt("myorg", "myapp", "fresh", "New {{ x }}\n")
    after = repo.commit("A new prompt")
    server.wait_for_commit(after)
    with server.client() as client:
        fresh = client.get("/api/v1/prompts/by-name/myorg/myapp/fresh").json()["id"]
        data = client.get(f"/api/v1/prompts/{fresh}/diff?from={before}").json()
    assert data["from"] == {"sha": before, "version": None, "exists": False}
    assert data["to"]["exists"] is True
    assert "+New {{ x }}\n" in data["body_diff"]


def test_diff_needs_from_and_refuses_unknown_or_malformed_refs(server: RunningServer) -> None:
    with server.client() as client:
        base = f"/api/v1/prompts/{MEDITATION_ID}/diff"
        missing = client.get(base)
        assert missing.status_code == 400
        assert "from=" in missing.json()["error"]["message"]
        for ref in ("nope", "HEAD~1", "a..b", "main:README.md"):
            answer = client.get(base, params={"from": ref})
            assert answer.status_code == 404, ref
            assert answer.json()["error"]["code"] == "REF_NOT_FOUND"


def test_diff_reads_only_commits_the_served_history_holds(server: RunningServer) -> None:
    repo = server.repo
    served = repo.head
    repo.branch("drafts")
    repo.repo.checkout("refs/heads/drafts")
    repo.write(PATH, "---\nname: greeting\n---\nA draft never served\n")
    draft = repo.commit("a draft on another branch")
    repo.repo.checkout("refs/heads/main" if repo.repo.branches.get("main") else "refs/heads/master")
    assert repo.head == served
    with server.client() as client:
        base = f"/api/v1/prompts/{MEDITATION_ID}/diff"
        for ref in (draft, draft[:12], "drafts", "refs/heads/drafts"):
            answer = client.get(base, params={"from": ref})
            assert answer.status_code == 404, ref
            assert answer.json()["error"]["code"] == "REF_NOT_FOUND"
            assert "draft never served" not in answer.text
        assert client.get(base, params={"from": served}).status_code == 200


def test_diff_refuses_sides_over_the_line_bound(tmp_path: Any) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("o", "a", "p", "small\n")
    first = repo.commit()
    repo.write_prompt("o", "a", "p", "line\n" * (MAX_DIFF_LINES + 1))
    second = repo.commit()
    revisions = Revisions(str(repo.path), resolve=str)
    with pytest.raises(ValueError, match="over the limit of 3,000"):
        revisions.diff("o/a/p.md", first, second)


def test_history_and_diff_of_an_id_outside_the_scope_answer_as_an_unknown_id(
    prompt_repo: PromptRepo, start_server: Any
) -> None:
    scoped = generate_key()
    server = start_server(prompt_repo, keys=[KeyRecord.for_key(scoped, scope="futureself")])
    with server.client(scoped) as client:
        for route in ("history", f"diff?from={prompt_repo.head}"):
            outside = client.get(f"/api/v1/prompts/{MEDITATION_ID}/{route}")
            unknown = client.get(f"/api/v1/prompts/{UNKNOWN_ID}/{route}")
            assert outside.status_code == unknown.status_code == 404, route
            assert outside.json()["error"]["code"] == "PROMPT_NOT_FOUND"
            assert outside.content == unknown.content.replace(
                UNKNOWN_ID.encode(), MEDITATION_ID.encode()
            )
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get(f"/api/v1/prompts/{MEDITATION_ID}/history").status_code == 401


def test_history_answers_match_the_openapi_document(server: RunningServer) -> None:
    first, _, _ = _two_more_versions(server)
    with server.client() as client:
        document = client.get("/openapi.json").json()
        prompt_id = _greeting_id(client)
        cases = [
            ("history", client.get(f"/api/v1/prompts/{prompt_id}/history")),
            ("history", client.get(f"/api/v1/prompts/{prompt_id}/history?limit=0")),
            ("history", client.get("/api/v1/prompts/nope/history")),
            ("diff", client.get(f"/api/v1/prompts/{prompt_id}/diff?from={first}")),
            ("diff", client.get(f"/api/v1/prompts/{prompt_id}/diff")),
            ("diff", client.get(f"/api/v1/prompts/{prompt_id}/diff?from=nope")),
        ]
        for route, response in cases:
            operation = document["paths"][f"/api/v1/prompts/{{id}}/{route}"]["get"]
            documented = operation["responses"][str(response.status_code)]
            if "$ref" in documented:
                name = documented["$ref"].split("/")[-1]
                documented = document["components"]["responses"][name]
            validate(document, documented["content"]["application/json"]["schema"], response.json())


def test_history_of_a_prompt_under_a_folder_whose_name_is_not_utf8(
    prompt_repo: PromptRepo, start_server: Any
) -> None:
    import pygit2

    git = prompt_repo.repo
    head = git.head.peel(pygit2.Commit)

    def tree_of(entries: list[tuple[bytes, int, bytes]]) -> pygit2.Oid:
        # Written by hand: pygit2's tree builder takes names as str only.
        raw = b"".join(b"%o %s\x00%s" % (m, n, oid) for n, m, oid in sorted(entries))
        return git.odb.write(pygit2.enums.ObjectType.TREE, raw)

    def commit(body: bytes) -> str:
        blob = git.create_blob(b"---\nversion: 1.0.0\n---\n" + body)
        folder = tree_of([(b"p.md", 0o100644, blob.raw)])
        app = tree_of([(b"caf\xe9", 0o40000, folder.raw)])
        org = tree_of([(b"a", 0o40000, app.raw)])
        top = [(e.raw_name, int(e.filemode), e.id.raw) for e in head.tree]
        root = tree_of([*top, (b"o", 0o40000, org.raw)])
        signature = prompt_repo.signature()
        parents = [git.head.target]
        return str(git.create_commit("HEAD", signature, signature, "raw", root, parents))

    first = commit(b"one\n")
    second = commit(b"two\n")
    server = start_server(prompt_repo)
    with server.client() as client:
        prompt = client.get("/api/v1/prompts/by-name/o/a/p").json()
        history = client.get(f"/api/v1/prompts/{prompt['id']}/history")
        assert history.status_code == 200, history.text
        assert [r["sha"] for r in history.json()["revisions"]] == [second, first]
        diff = client.get(f"/api/v1/prompts/{prompt['id']}/diff?from={first}").json()
        assert "-one\n+two\n" in diff["body_diff"]


def test_history_limit_of_non_ascii_digits_is_refused_not_a_crash(server: RunningServer) -> None:
    """``str.isdigit`` takes "²" and "٣" while ``int`` refuses "²": both are a 400."""
    with server.client() as client:
        prompt_id = _greeting_id(client)
        for bad in ("%C2%B2", "%D9%A3", "1" * 5000):
            answer = client.get(f"/api/v1/prompts/{prompt_id}/history?limit={bad}")
            assert answer.status_code == 400, bad
            assert answer.json()["error"]["code"] == "INVALID_QUERY"
