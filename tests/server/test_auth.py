"""Authentication, key scopes and the per-key rate limit, over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from promptory.server.keys import KeyRecord, generate_key
from support.gitrepo import PromptRepo
from support.servers import RunningServer

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"
FUTURESELF = "/api/v1/prompts/by-name/futureself/meditate/meditation_script_relax"

AUTHENTICATED = [
    ("GET", f"/api/v1/prompts/{MEDITATION_ID}"),
    ("GET", "/api/v1/prompts/by-name/myorg/myapp/greeting"),
    ("POST", f"/api/v1/prompts/{MEDITATION_ID}/render"),
    ("GET", "/api/v1/prompts"),
    ("GET", "/api/v1/status"),
]


@pytest.mark.parametrize(("method", "path"), AUTHENTICATED)
def test_missing_key_is_401_unauthorized(
    shared_server: RunningServer, method: str, path: str
) -> None:
    response = httpx.request(method, shared_server.url + path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer pm_live_" + "x" * 43,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "pm_live_abc",
        "Bearer " + "y" * 5000,
    ],
)
def test_unknown_or_malformed_key_is_401(shared_server: RunningServer, authorization: str) -> None:
    response = httpx.get(
        f"{shared_server.url}/api/v1/prompts/{MEDITATION_ID}",
        headers={"Authorization": authorization},
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


def test_error_messages_never_echo_the_key(shared_server: RunningServer) -> None:
    key = "pm_live_" + "s" * 43
    response = httpx.get(
        f"{shared_server.url}/api/v1/status", headers={"Authorization": f"Bearer {key}"}
    )
    assert key not in response.text


def test_lowercase_bearer_scheme_is_accepted(shared_server: RunningServer) -> None:
    response = httpx.get(
        f"{shared_server.url}/api/v1/prompts/{MEDITATION_ID}",
        headers={"Authorization": f"bearer {shared_server.api_key}"},
    )
    assert response.status_code == 200


# --- scopes -----------------------------------------------------------------------------------


@pytest.fixture
def scoped(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> tuple[RunningServer, str, str]:
    """A server with a key scoped to myorg/myapp and one scoped to the org futureself."""
    app_key, org_key = generate_key(), generate_key()
    server = start_server(
        prompt_repo,
        keys=[
            KeyRecord.for_key(app_key, scope="myorg/myapp"),
            KeyRecord.for_key(org_key, scope="futureself"),
        ],
    )
    return server, app_key, org_key


def test_app_scoped_key_reads_its_app(scoped: tuple[RunningServer, str, str]) -> None:
    server, app_key, _ = scoped
    with server.client(app_key) as client:
        assert client.get(f"/api/v1/prompts/{MEDITATION_ID}").status_code == 200
        assert client.get("/api/v1/prompts/by-name/myorg/myapp/greeting").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", FUTURESELF),
        ("GET", "/api/v1/prompts/by-name/futureself/nope/nope"),
        ("GET", "/api/v1/prompts?org=futureself"),
        ("GET", "/api/v1/prompts?org=myorg&app=other"),
    ],
)
def test_app_scoped_key_is_403_elsewhere(
    scoped: tuple[RunningServer, str, str], method: str, path: str
) -> None:
    server, app_key, _ = scoped
    with server.client(app_key) as client:
        response = client.request(method, path)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"


UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("method", "template"),
    [("GET", "/api/v1/prompts/{}"), ("POST", "/api/v1/prompts/{}/render")],
)
@pytest.mark.parametrize("if_none_match", [None, "*"])
def test_another_apps_id_answers_exactly_like_an_unknown_id(
    scoped: tuple[RunningServer, str, str],
    method: str,
    template: str,
    if_none_match: str | None,
) -> None:
    server, _, org_key = scoped
    headers = {"If-None-Match": if_none_match} if if_none_match else {}
    with server.client(org_key) as client:
        outside = client.request(method, template.format(MEDITATION_ID), headers=headers)
        unknown = client.request(method, template.format(UNKNOWN_ID), headers=headers)

    def seen(response: httpx.Response, prompt_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
        kept = [(k, v) for k, v in response.headers.multi_items() if k != "date"]
        return response.status_code, kept, response.content.replace(prompt_id.encode(), b"ID")

    assert seen(outside, MEDITATION_ID) == seen(unknown, UNKNOWN_ID)
    assert outside.status_code == 404
    assert b"myorg" not in outside.content


def test_org_scoped_key_reads_every_app_of_its_org(scoped: tuple[RunningServer, str, str]) -> None:
    server, _, org_key = scoped
    with server.client(org_key) as client:
        assert client.get(FUTURESELF).status_code == 200


def test_scoped_key_lists_and_counts_only_its_scope(
    scoped: tuple[RunningServer, str, str],
) -> None:
    server, _, org_key = scoped
    with server.client(org_key) as client:
        listed = client.get("/api/v1/prompts").json()
        status = client.get("/api/v1/status").json()
    assert [p["org"] for p in listed["prompts"]] == ["futureself"]
    assert status["files"] == status["prompts"] == 1


# --- rate limit -------------------------------------------------------------------------------


def test_rate_limit_is_429_with_retry_after(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(prompt_repo, rate_limit=3)
    with server.client() as client:
        statuses = [client.get("/api/v1/status").status_code for _ in range(3)]
        limited = client.get(f"/api/v1/prompts/{MEDITATION_ID}")
    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= 20


def test_rate_limit_counts_per_key_not_per_address(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> None:
    other = generate_key()
    server = start_server(prompt_repo, rate_limit=2, keys=[KeyRecord.for_key(other)])
    with server.client() as client:
        for _ in range(2):
            client.get("/api/v1/status")
        assert client.get("/api/v1/status").status_code == 429
    with server.client(other) as client:
        assert client.get("/api/v1/status").status_code == 200


def test_health_is_not_rate_limited(
    prompt_repo: PromptRepo, start_server: Callable[..., RunningServer]
) -> None:
    server = start_server(prompt_repo, rate_limit=1)
    statuses = {httpx.get(f"{server.url}/health").status_code for _ in range(5)}
    assert statuses == {200}
