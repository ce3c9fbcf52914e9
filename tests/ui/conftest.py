"""Fixtures of the web UI tests: a server with a keys file, and signed-in HTTP sessions.

* `ui_server` -> `UIServer`: the example repository served in a thread with a keys file
  (checked every 0.05 s) holding an unscoped admin key (`admin_key`), a plain key
  (`reader_key`) and a key scoped to ``futureself`` (`scoped_key`).
* `UIServer.sign_in(key)` -> an httpx client holding a session cookie, and the CSRF token
  of its session (read from a page, as a browser would).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from promptory.server.app import ServerSettings, create_app
from promptory.server.keys import KeyRing, add_key
from promptory.server.runner import BackgroundServer
from support.gitrepo import PromptRepo
from support.servers import copy_examples

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    match = _CSRF.search(html)
    assert match is not None, "no form with a CSRF token on the page"
    return match.group(1)


@dataclass
class UIServer:
    """A server with the UI, its repository and keys."""

    url: str
    repo: PromptRepo
    keys_file: Path
    admin_key: str
    reader_key: str
    scoped_key: str
    app: object

    def browser(self) -> httpx.Client:
        """A cookie-keeping client that does not follow redirects."""
        return httpx.Client(base_url=self.url, timeout=60.0, follow_redirects=False)

    def sign_in(self, key: str) -> tuple[httpx.Client, str]:
        """A client signed in with `key`, and its session's CSRF token."""
        client = self.browser()
        form = client.get("/ui/login")
        assert form.status_code == 200
        answer = client.post(
            "/ui/login", data={"api_key": key, "csrf_token": csrf_of(form.text), "next": ""}
        )
        assert answer.status_code == 303, answer.text
        page = client.get("/ui/status")
        assert page.status_code == 200
        return client, csrf_of(page.text)


@pytest.fixture
def ui_server(tmp_path: Path) -> Iterator[UIServer]:
    repo = PromptRepo(tmp_path / "prompts")
    copy_examples(repo)
    repo.commit("Example prompts")
    keys_file = tmp_path / "keys" / "keys.json"
    admin, _ = add_key(keys_file, admin=True, label="admin")
    reader, _ = add_key(keys_file, label="reader")
    scoped, _ = add_key(keys_file, scope="futureself", label="scoped")
    ring = KeyRing.from_sources(keys_file=keys_file, environ={}, check_interval=0.05)
    app = create_app(ServerSettings(repo=repo.path, keyring=ring, poll_interval=0.05))
    with BackgroundServer(app) as background:
        yield UIServer(background.url, repo, keys_file, admin, reader, scoped, app)
