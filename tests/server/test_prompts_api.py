"""GET /api/v1/prompts/{id} and /by-name/...: JSON, environments, ETags, 304, refs, 404s."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from promptory.prompt import PROMPT_JSON_KEYS
from support.servers import RunningServer

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"
BY_NAME = "/api/v1/prompts/by-name"
LIVE = "private, max-age=60, stale-while-revalidate=300"
PINNED = "private, max-age=31536000, immutable"


@pytest.fixture
def client(shared_server: RunningServer) -> Iterator[httpx.Client]:
    with shared_server.client() as client:
        yield client


def test_prompt_by_id_has_every_key_in_contract_order(client: httpx.Client) -> None:
    response = client.get(f"/api/v1/prompts/{MEDITATION_ID}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert tuple(data) == PROMPT_JSON_KEYS
    assert data["id"] == MEDITATION_ID
    assert data["name"] == "meditation_script_relax"
    assert data["model"]["default"] == "gemini-2.0-flash"
    assert data["modality"] is None
    assert data["audio"] is None
    assert re.fullmatch(r"[0-9a-f]{40}", data["git_sha"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["updated_at"])


def test_prompt_by_name_without_environment_is_the_production_variant(
    client: httpx.Client,
) -> None:
    data = client.get(f"{BY_NAME}/myorg/myapp/greeting").json()
    assert data["environment"] == "production"
    assert data["body"].startswith("{% if formal %}Dear{% else %}Hey{% endif %}")


def test_environment_filter_returns_exactly_that_variant(client: httpx.Client) -> None:
    data = client.get(f"{BY_NAME}/myorg/myapp/greeting", params={"environment": "development"})
    assert data.json()["environment"] == "development"
    missing = client.get(f"{BY_NAME}/myorg/myapp/greeting", params={"environment": "staging"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "PROMPT_NOT_FOUND"


def test_invalid_environment_is_400(client: httpx.Client) -> None:
    response = client.get(f"{BY_NAME}/myorg/myapp/greeting", params={"environment": "prod"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_ENVIRONMENT"


def test_includes_list_front_matter_and_body_references(client: httpx.Client) -> None:
    assert client.get(f"{BY_NAME}/myorg/myapp/coach_checkin").json()["includes"] == [
        "safety_preamble"
    ]
    assert client.get(f"{BY_NAME}/myorg/myapp/greeting").json()["includes"] == []


def test_app_id_is_the_same_for_every_prompt_of_an_app(client: httpx.Client) -> None:
    a = client.get(f"{BY_NAME}/myorg/myapp/greeting").json()["app_id"]
    b = client.get(f"{BY_NAME}/myorg/myapp/coach_checkin").json()["app_id"]
    c = client.get(f"{BY_NAME}/futureself/meditate/meditation_script_relax").json()["app_id"]
    assert a == b != c


def test_unknown_id_is_404_prompt_not_found(client: httpx.Client) -> None:
    response = client.get("/api/v1/prompts/missing-id")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "PROMPT_NOT_FOUND", "message": "no prompt with id 'missing-id'"}
    }


def test_unknown_app_is_404_app_not_found(client: httpx.Client) -> None:
    response = client.get(f"{BY_NAME}/myorg/nope/greeting")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "APP_NOT_FOUND"


def test_unknown_name_in_a_known_app_is_404_prompt_not_found(client: httpx.Client) -> None:
    response = client.get(f"{BY_NAME}/myorg/myapp/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "PROMPT_NOT_FOUND"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/prompts/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/prompts/%2e%2e",
        f"{BY_NAME}/myorg/myapp/..%2Fmyapp%2Fgreeting",
        f"{BY_NAME}/myorg/%2e%2e/greeting",
        f"{BY_NAME}/..%2F..%2F/myapp/greeting",
    ],
)
def test_path_traversal_finds_nothing(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] in {"NOT_FOUND", "PROMPT_NOT_FOUND", "APP_NOT_FOUND"}


def test_unknown_route_is_404_in_the_error_envelope(client: httpx.Client) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_trailing_slash_is_404_not_a_redirect(client: httpx.Client) -> None:
    response = client.get("/api/v1/prompts/")
    assert response.status_code == 404


def test_wrong_method_is_405_in_the_error_envelope(client: httpx.Client) -> None:
    response = client.delete(f"/api/v1/prompts/{MEDITATION_ID}")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in response.headers["allow"]


# --- ETag, Cache-Control, 304 ----------------------------------------------------------------


def test_etag_is_strong_quoted_version_and_hash(client: httpx.Client) -> None:
    response = client.get(f"/api/v1/prompts/{MEDITATION_ID}")
    assert re.fullmatch(r'"1\.2\.0-[0-9a-f]{16}"', response.headers["etag"])
    assert response.headers["cache-control"] == LIVE


def test_the_same_prompt_by_id_and_by_name_has_the_same_etag(client: httpx.Client) -> None:
    by_id = client.get(f"/api/v1/prompts/{MEDITATION_ID}")
    by_name = client.get(f"{BY_NAME}/myorg/myapp/meditation_script_relax")
    assert by_id.headers["etag"] == by_name.headers["etag"]
    assert by_id.content == by_name.content


@pytest.mark.parametrize(
    "if_none_match",
    [
        "{etag}",
        "W/{etag}",
        '"other-1", {etag}',
        '"a", W/"b",W/{etag} , "c"',
        "*",
    ],
)
def test_if_none_match_per_rfc_9110_gives_304_with_etag_and_cache_control(
    client: httpx.Client, if_none_match: str
) -> None:
    etag = client.get(f"/api/v1/prompts/{MEDITATION_ID}").headers["etag"]
    response = client.get(
        f"/api/v1/prompts/{MEDITATION_ID}",
        headers={"If-None-Match": if_none_match.format(etag=etag)},
    )
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"] == LIVE


@pytest.mark.parametrize("if_none_match", ['"1.2.0-0000000000000000"', "W/x", "", '"a", "b"'])
def test_if_none_match_that_does_not_match_gives_200(
    client: httpx.Client, if_none_match: str
) -> None:
    response = client.get(
        f"/api/v1/prompts/{MEDITATION_ID}", headers={"If-None-Match": if_none_match}
    )
    assert response.status_code == 200


def test_304_also_works_by_name(client: httpx.Client) -> None:
    etag = client.get(f"{BY_NAME}/myorg/myapp/greeting").headers["etag"]
    response = client.get(f"{BY_NAME}/myorg/myapp/greeting", headers={"If-None-Match": etag})
    assert response.status_code == 304


def test_etag_changes_exactly_when_the_body_changes(server: RunningServer) -> None:
    with server.client() as client:
        before = client.get(f"{BY_NAME}/myorg/myapp/greeting")
        other = client.get(f"{BY_NAME}/myorg/myapp/coach_checkin")
        server.repo.write_prompt("myorg", "myapp", "unrelated")
        server.wait_for_commit(server.repo.commit("add an unrelated prompt"))
        same = client.get(f"{BY_NAME}/myorg/myapp/greeting")
        assert same.headers["etag"] == before.headers["etag"]
        assert same.content == before.content
        server.repo.write(
            "myorg/myapp/greeting.md",
            (server.repo.path / "myorg/myapp/greeting.md").read_text() + "One more line.\n",
        )
        server.wait_for_commit(server.repo.commit("change greeting"))
        changed = client.get(f"{BY_NAME}/myorg/myapp/greeting")
        assert changed.content != before.content
        assert changed.headers["etag"] != before.headers["etag"]
        assert changed.headers["etag"].startswith('"2.0.0-')
        assert (
            client.get(f"{BY_NAME}/myorg/myapp/coach_checkin").headers["etag"]
            == (other.headers["etag"])
        )


def test_stale_etag_after_a_change_gives_the_new_prompt(server: RunningServer) -> None:
    with server.client() as client:
        old = client.get(f"{BY_NAME}/myorg/myapp/greeting").headers["etag"]
        server.repo.write_prompt("myorg", "myapp", "greeting", "new\n", environment="production")
        server.wait_for_commit(server.repo.commit())
        response = client.get(f"{BY_NAME}/myorg/myapp/greeting", headers={"If-None-Match": old})
        assert response.status_code == 200
        assert response.json()["body"] == "new\n"


# --- ?ref= ------------------------------------------------------------------------------------


def test_ref_by_commit_id_serves_that_commit_for_good(server: RunningServer) -> None:
    repo = server.repo
    old = repo.head
    repo.write_prompt("myorg", "myapp", "greeting", "new\n", environment="production")
    server.wait_for_commit(repo.commit())
    with server.client() as client:
        response = client.get(f"{BY_NAME}/myorg/myapp/greeting", params={"ref": old})
        assert response.status_code == 200
        assert response.json()["body"].startswith("{% if formal %}")
        assert response.json()["git_sha"] == old
        assert response.headers["cache-control"] == PINNED
        current = client.get(f"{BY_NAME}/myorg/myapp/greeting")
        assert current.json()["body"] == "new\n"
        assert current.headers["cache-control"] == LIVE


def test_ref_by_tag_serves_the_tagged_commit(server: RunningServer) -> None:
    repo = server.repo
    repo.tag("v1")
    repo.write_prompt("myorg", "myapp", "greeting", "new\n", environment="production")
    server.wait_for_commit(repo.commit())
    with server.client() as client:
        response = client.get(f"/api/v1/prompts/{MEDITATION_ID}", params={"ref": "v1"})
        assert response.status_code == 200
        assert response.headers["cache-control"] == PINNED
        by_name = client.get(f"{BY_NAME}/myorg/myapp/greeting", params={"ref": "v1"})
        assert by_name.json()["body"] != "new\n"


def test_ref_naming_the_served_branch_is_served_but_not_cached_for_good(
    server: RunningServer,
) -> None:
    with server.client() as client:
        response = client.get(f"/api/v1/prompts/{MEDITATION_ID}", params={"ref": "main"})
        assert response.status_code == 200
        assert response.headers["cache-control"] == LIVE


@pytest.mark.parametrize("ref", ["no-such-tag", "0" * 40, "HEAD~1", "HEAD@{1}", ":/greeting"])
def test_unknown_ref_is_404_ref_not_found(client: httpx.Client, ref: str) -> None:
    response = client.get(f"/api/v1/prompts/{MEDITATION_ID}", params={"ref": ref})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "REF_NOT_FOUND"


def test_empty_query_values_count_as_not_given(client: httpx.Client) -> None:
    response = client.get(f"{BY_NAME}/myorg/myapp/greeting", params={"environment": "", "ref": ""})
    assert response.status_code == 200
    assert response.json()["environment"] == "production"


# --- list, status, health --------------------------------------------------------------------


def test_list_holds_every_prompt_sorted_with_count_and_commit(
    client: httpx.Client, shared_server: RunningServer
) -> None:
    data = client.get("/api/v1/prompts").json()
    keys = [(p["org"], p["app"], p["name"], p["environment"]) for p in data["prompts"]]
    assert keys == sorted(keys)
    assert data["count"] == len(data["prompts"]) == 6
    assert data["commit"] == shared_server.repo.head
    assert all(tuple(p) == PROMPT_JSON_KEYS for p in data["prompts"])


def test_list_filters_by_org_app_environment_and_tag(client: httpx.Client) -> None:
    def names(**params: str) -> list[str]:
        data = client.get("/api/v1/prompts", params=params).json()
        return [f"{p['name']}:{p['environment']}" for p in data["prompts"]]

    assert names(org="futureself") == ["meditation_script_relax:production"]
    assert names(app="myapp", environment="development") == ["greeting:development"]
    assert names(tag="greeting") == ["greeting:development", "greeting:production"]
    assert names(org="myorg", app="myapp", tag="experiment") == ["greeting:development"]


def test_status_reports_commit_counts_and_no_problems(
    client: httpx.Client, shared_server: RunningServer
) -> None:
    data = client.get("/api/v1/status").json()
    assert data == {
        "commit": shared_server.repo.head,
        "ref": "HEAD",
        "committed_at": "2026-09-21T14:13:20Z",
        "files": 6,
        "prompts": 6,
        "problems": [],
    }


def test_health_needs_no_key(shared_server: RunningServer) -> None:
    response = httpx.get(f"{shared_server.url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "commit": shared_server.repo.head, "prompts": 6}


def test_inactive_prompt_is_served_by_id_only(server: RunningServer) -> None:
    server.repo.write_prompt(
        "myorg", "myapp", "retired", "Old.\n", environment="production", active=False
    )
    server.wait_for_commit(server.repo.commit())
    with server.client() as client:
        by_name = client.get(f"{BY_NAME}/myorg/myapp/retired")
        assert by_name.status_code == 404
        assert by_name.json()["error"]["code"] == "PROMPT_NOT_FOUND"
        listed = client.get("/api/v1/prompts", params={"app": "myapp"}).json()["prompts"]
        [retired] = [p for p in listed if p["name"] == "retired"]
        assert retired["active"] is False
        by_id = client.get(f"/api/v1/prompts/{retired['id']}")
    assert by_id.status_code == 200
    assert by_id.json()["active"] is False


def test_a_prompt_without_a_role_is_served_as_system_like_the_existing_server(
    server: RunningServer,
) -> None:
    server.repo.write_prompt("myorg", "myapp", "roleless", "Hi\n")
    server.wait_for_commit(server.repo.commit())
    with server.client() as client:
        data = client.get(f"{BY_NAME}/myorg/myapp/roleless").json()
    assert data["role"] == "system"
