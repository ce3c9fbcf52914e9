"""``POST /api/v1/webhooks/git``: push webhooks signed as GitHub, GitLab and Gitea sign them
trigger one fetch at once; anything else is a 401 and fetches nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from promptory.server.webhooks import MAX_WEBHOOK_BODY

from .conftest import WEBHOOK_SECRET, Follower, Remote

PUSH = json.dumps({"ref": "refs/heads/main", "after": "0" * 40, "commits": []}).encode()


def github(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"}


def gitlab(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}


def gitea(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Gitea-Event": "push", "X-Gitea-Signature": digest}


FORGES = {"github": github, "gitlab": gitlab, "gitea": gitea}


def status(server: Follower) -> dict[str, Any]:
    with server.client() as http:
        return http.get("/api/v1/status").json()["follow"]  # type: ignore[no-any-return]


def post(server: Follower, headers: dict[str, str], body: bytes = PUSH) -> httpx.Response:
    headers = {"Content-Type": "application/json", **headers}
    return httpx.post(f"{server.url}/api/v1/webhooks/git", content=body, headers=headers)


@pytest.fixture
def idle(remote: Remote, follow: Callable[..., Follower]) -> Follower:
    """A server that fetches only when a webhook asks (interval: 10 minutes)."""
    server = follow(remote, pull_interval=600)
    server.wait_for_commit(remote.pushed[-1])
    return server


@pytest.mark.parametrize("forge", list(FORGES))
def test_a_signed_push_is_fetched_at_once(forge: str, remote: Remote, idle: Follower) -> None:
    remote.write_prompt("myorg", "myapp", "hooked", f"from {forge}\n")
    sha = remote.push("a push")
    answer = post(idle, FORGES[forge](PUSH))
    assert answer.status_code == 202
    assert answer.json() == {"accepted": True, "forge": forge}
    idle.wait_for_commit(sha, timeout=10)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        github(PUSH, "wrong secret"),
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        {
            "X-Hub-Signature-256": "sha1="
            + hmac.new(WEBHOOK_SECRET.encode(), PUSH, "sha1").hexdigest()
        },
        gitlab(PUSH, "wrong secret"),
        {"X-Gitlab-Token": ""},
        gitea(PUSH, "wrong secret"),
        gitea(PUSH + b" "),  # signed over another body
    ],
    ids=[
        "unsigned",
        "github-wrong",
        "github-zeros",
        "github-sha1",
        "gitlab-wrong",
        "gitlab-empty",
        "gitea-wrong",
        "gitea-other-body",
    ],
)
def test_unsigned_or_wrongly_signed_is_401_and_fetches_nothing(
    headers: dict[str, str], idle: Follower
) -> None:
    before = status(idle)
    answer = post(idle, headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "UNAUTHORIZED"
    after = status(idle)
    assert after["webhooks"] == before["webhooks"]
    assert after["fetches"] == before["fetches"]


def test_without_a_configured_secret_every_webhook_is_refused(
    remote: Remote, follow: Callable[..., Follower]
) -> None:
    server = follow(remote, webhook_secret=None)
    answer = post(server, github(PUSH))
    assert answer.status_code == 401
    assert "no webhook secret is configured" in answer.json()["error"]["message"]


def test_a_body_over_the_bound_is_413(idle: Follower) -> None:
    body = b"x" * (MAX_WEBHOOK_BODY + 1)
    answer = post(idle, github(body), body)
    assert answer.status_code == 413
    assert status(idle)["webhooks"] == 0


def test_a_burst_of_pushes_makes_one_fetch(remote: Remote, idle: Follower) -> None:
    sha = remote.push("pushed once, announced twenty times")
    before = status(idle)["fetches"]
    # The store's lock is held while the burst lands: the fetcher may wake and fetch once,
    # but cannot index (and so cannot start another fetch) until every post is answered.
    # However slowly a loaded machine delivers the posts, they all land before the fetcher
    # is free again; no coalescing window has to be hit.
    store = idle.app.state.store
    with store._lock:
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda _: post(idle, gitea(PUSH)).status_code, range(20)))
        assert status(idle)["fetches"] - before <= 1
    assert answers == [202] * 20
    idle.wait_for_commit(sha)
    fetches = status(idle)["fetches"] - before
    # One, or two when posts came after the first fetch had started (their push could have
    # come after that fetch read the remote): one more for all of them, never one each.
    assert 1 <= fetches <= 2, fetches
    assert status(idle)["webhooks"] == 20


def test_a_server_that_follows_no_remote_answers_409(start_server: Any, prompt_repo: Any) -> None:
    server = start_server(prompt_repo, webhook_secret=WEBHOOK_SECRET)
    answer = httpx.post(f"{server.url}/api/v1/webhooks/git", content=PUSH, headers=github(PUSH))
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "NOT_FOLLOWING"
