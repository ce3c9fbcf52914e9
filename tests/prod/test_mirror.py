"""``--pull-from``: a server follows a git remote through a mirror of its own."""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from promptory.server.mirror import Mirror, MirrorError, redact

from .conftest import Follower, Remote, following

MEDITATION_ID = "550e8400-e29b-41d4-a716-446655440000"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def test_serves_the_remote_branch_and_is_ready_with_its_sha(
    remote: Remote, follow: Callable[..., Follower]
) -> None:
    server = follow(remote)
    server.wait_for_commit(remote.pushed[-1])
    with server.client() as http:
        ready = http.get("/ready").json()
        assert ready["status"] == "ready"
        assert ready["follow"]["in_sync"] is True
        assert ready["follow"]["branch"] == "main"
        assert ready["follow"]["last_fetch_at"] is not None
        assert ready["follow"]["lag_seconds"] >= 0
        assert http.get(f"/api/v1/prompts/{MEDITATION_ID}").status_code == 200


def test_a_push_is_served_after_the_next_fetch(
    remote: Remote, follow: Callable[..., Follower]
) -> None:
    server = follow(remote, pull_interval=0.2)
    server.wait_for_commit(remote.pushed[-1])
    remote.write_prompt("myorg", "myapp", "fresh", "new prompt\n")
    sha = remote.push("add fresh")
    server.wait_for_commit(sha)
    with server.client() as http:
        answer = http.get("/api/v1/prompts/by-name/myorg/myapp/fresh")
        assert answer.status_code == 200
        assert answer.json()["body"] == "new prompt\n"


def test_not_ready_before_a_commit_is_served_and_says_why(
    tmp_path: Path, follow: Callable[..., Follower]
) -> None:
    server = follow(str(tmp_path / "no-such-remote.git"), pull_interval=0.2)
    with server.client() as http:
        wait_until(
            lambda: http.get("/api/v1/status").json()["follow"]["fetch_failures"] >= 1,
            what="a failed fetch",
        )
        ready = http.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["commit"] is None
        assert "no-such-remote" in ready.json()["follow"]["last_error"]
        assert http.get("/health").status_code == 200
        assert http.get(f"/api/v1/prompts/{MEDITATION_ID}").status_code == 404


def test_an_unreachable_remote_leaves_the_last_good_commit_served(
    remote: Remote, follow: Callable[..., Follower]
) -> None:
    server = follow(remote, pull_interval=0.1)
    good = remote.pushed[-1]
    server.wait_for_commit(good)
    moved = remote.bare.with_name("moved.git")
    remote.bare.rename(moved)
    with server.client() as http:
        wait_until(
            lambda: http.get("/api/v1/status").json()["follow"]["last_error"] is not None,
            what="the failure reported",
        )
        assert http.get("/ready").json()["commit"] == good
        assert http.get(f"/api/v1/prompts/{MEDITATION_ID}").status_code == 200
        metrics = http.get("/metrics").text
        assert "promptory_fetch_failures_total" in metrics
        assert "promptory_fetch_failures_total 0.0" not in metrics
        moved.rename(remote.bare)
        wait_until(
            lambda: http.get("/api/v1/status").json()["follow"]["last_error"] is None,
            what="the remote read again",
        )


def test_a_restart_serves_the_mirrored_commit_before_any_fetch(
    remote: Remote, api_key: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "mirror"
    with following(remote.url, api_key, data_dir) as server:
        server.wait_for_commit(remote.pushed[-1])
    shutil.rmtree(remote.bare)  # the remote is gone: only the mirror has the commit
    with following(remote.url, api_key, data_dir) as server, server.client() as http:
        ready = http.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["commit"] == remote.pushed[-1]


def test_a_force_push_to_another_history_is_served_whole(
    remote: Remote, follow: Callable[..., Follower], tmp_path: Path
) -> None:
    server = follow(remote, pull_interval=0.1)
    server.wait_for_commit(remote.pushed[-1])
    other = Remote(tmp_path / "other")
    other.write_prompt("neworg", "newapp", "only", "only this\n")
    sha = other.push("another history")
    other.work.repo.remotes.create("theirs", str(remote.bare))
    other.work.repo.remotes["theirs"].push(["+refs/heads/main:refs/heads/main"])
    server.wait_for_commit(sha)
    with server.client() as http:
        assert http.get("/api/v1/prompts/by-name/neworg/newapp/only").status_code == 200


def test_credentials_in_the_url_are_never_shown_or_logged(
    follow: Callable[..., Follower], caplog: pytest.LogCaptureFixture
) -> None:
    url = "http://deploy:tok3n-value@127.0.0.1:9/prompts.git?access_token=tok3n-value"
    with caplog.at_level(logging.DEBUG, logger="promptory"):
        server = follow(url, pull_interval=0.2)
        with server.client() as http:
            wait_until(
                lambda: http.get("/api/v1/status").json()["follow"]["last_error"] is not None,
                what="the failed fetch",
            )
            status = http.get("/api/v1/status").text
            ready = http.get("/ready").text
    assert "tok3n" not in status + ready
    assert "***@127.0.0.1:9" in status
    assert "tok3n" not in caplog.text
    assert "127.0.0.1:9" in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@example.com/r.git", "https://***@example.com/r.git"),
        ("https://tok@example.com:8443/r.git", "https://***@example.com:8443/r.git"),
        (
            "https://example.com/r.git?token=abc&x=1",
            "https://example.com/r.git?token=%2A%2A%2A&x=1",
        ),
        ("git@example.com:org/r.git", "git@example.com:org/r.git"),
        ("/srv/prompts.git", "/srv/prompts.git"),
    ],
)
def test_redact_drops_user_information_and_secret_query_values(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_the_mirror_never_writes_the_url_to_disk(
    follow: Callable[..., Follower], tmp_path: Path
) -> None:
    data_dir = tmp_path / "secret-mirror"
    server = follow("http://deploy:tok3n-value@127.0.0.1:9/p.git", data_dir=data_dir)
    with server.client() as http:
        wait_until(
            lambda: http.get("/api/v1/status").json()["follow"]["fetches"] >= 1,
            what="a fetch",
        )
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert b"tok3n" not in path.read_bytes(), path


def test_ready_without_a_remote_reports_the_commit(shared_server: object) -> None:
    url = shared_server.url  # type: ignore[attr-defined]
    ready = httpx.get(f"{url}/ready")
    assert ready.status_code == 200
    assert len(ready.json()["commit"]) == 40
    assert "follow" not in ready.json()


def test_a_branch_deleted_on_the_remote_leaves_the_last_good_commit_served(
    remote: Remote, follow: Callable[..., Follower]
) -> None:
    import pygit2

    server = follow(remote, pull_interval=0.1)
    good = remote.pushed[-1]
    server.wait_for_commit(good)
    pygit2.Repository(str(remote.bare)).references.delete("refs/heads/main")
    with server.client() as http:
        wait_until(
            lambda: http.get("/api/v1/status").json()["follow"]["last_error"] is not None,
            what="the unreadable branch reported",
        )
        assert "HEAD" in http.get("/api/v1/status").json()["follow"]["last_error"]
        assert http.get("/ready").json()["commit"] == good
        assert http.get(f"/api/v1/prompts/{MEDITATION_ID}").status_code == 200


def test_a_data_dir_holding_something_else_is_refused(remote: Remote, tmp_path: Path) -> None:
    from promptory.server.mirror import Mirror, MirrorError

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(MirrorError, match="neither empty nor a mirror"):
        Mirror(remote.url, occupied)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]


class _SilentRemote:
    """A listening socket that accepts connections and never answers."""

    def __init__(self) -> None:
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self._socket.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/repo.git"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.held.append(self._socket.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for connection in self.held:
            connection.close()
        self._socket.close()


@pytest.mark.parametrize("branch", ["main", None])
def test_a_remote_that_accepts_and_never_answers_fails_the_fetch_in_bounded_time(
    tmp_path: Path, branch: str | None
) -> None:
    """Without a bound the fetch thread would wait on the socket forever."""
    silent = _SilentRemote()
    try:
        mirror = Mirror(silent.url, tmp_path / "mirror", branch, timeout=0.5)
        failures: list[BaseException] = []

        def fetch() -> None:
            try:
                mirror.fetch()
            except BaseException as exc:
                failures.append(exc)

        fetcher = threading.Thread(target=fetch, daemon=True)
        fetcher.start()
        fetcher.join(30)
        assert not fetcher.is_alive(), "the fetch still waits on a silent remote"
        assert len(failures) == 1 and isinstance(failures[0], MirrorError), failures
        assert "timed out" in str(failures[0])
        assert silent.held, "the fetch never reached the remote"
    finally:
        silent.close()
