"""A watch stream ends when its key is revoked: a revoked key learns nothing more.

Keys are checked once, when a stream opens; a stream held open past the key's revocation
kept receiving every later commit's prompt ids, names and ETags of its scope.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse

from promptory.server.app import ServerSettings, create_app
from promptory.server.keys import KeyRing, add_key, revoke_key
from promptory.server.runner import BackgroundServer
from support.gitrepo import PromptRepo
from support.servers import copy_examples


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, PromptRepo, Path, str, str]]:
    repo = PromptRepo(tmp_path / "prompts")
    copy_examples(repo)
    repo.commit("Example prompts")
    keys_file = tmp_path / "keys" / "keys.json"
    key, record = add_key(keys_file, scope="myorg", label="watcher")
    ring = KeyRing.from_sources(keys_file=keys_file, environ={}, check_interval=0.05)
    app = create_app(
        ServerSettings(repo=repo.path, keyring=ring, poll_interval=0.05, watch_heartbeat=0.2)
    )
    with BackgroundServer(app) as background:
        yield background.url, repo, keys_file, key, record.id


def test_a_revoked_keys_stream_gets_no_more_events(
    served: tuple[str, PromptRepo, Path, str, str],
) -> None:
    url, repo, keys_file, key, key_id = served
    headers = {"Authorization": f"Bearer {key}"}
    with (
        httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(10.0)) as http,
        connect_sse(http, "GET", "/api/v1/watch") as source,
    ):
        assert source.response.status_code == 200
        events = source.iter_sse()
        assert next(events).event == "hello"
        revoke_key(keys_file, key_id)
        # The key is refused by the API from now on...
        with httpx.Client(base_url=url, headers=headers, timeout=10.0) as api:
            deadline_tries = 200
            while api.get("/api/v1/prompts").status_code != 401:
                deadline_tries -= 1
                assert deadline_tries > 0, "the revoked key is still accepted"
        # ...and the open stream must not tell it about a commit made after that.
        repo.write_prompt("myorg", "myapp", "secret_plan", "launch on friday\n")
        repo.commit("a new prompt in the revoked key's scope")
        leaked = []
        try:
            for event in events:  # ends when the server closes the stream
                if event.event == "commit":
                    leaked.extend(p["name"] for p in json.loads(event.data)["prompts"])
                    break
        except httpx.ReadTimeout:
            pass
    assert leaked == [], f"a revoked key's stream was told of {leaked}"
