"""The keys file changes under a running server: new keys work and revoked keys stop working,
without a restart; revoke and rotate keep the file's other keys."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from promptory.server.app import ServerSettings, create_app
from promptory.server.keys import (
    KeyRing,
    KeysFileError,
    add_key,
    find_key,
    generate_key,
    load_keys_file,
    revoke_key,
    rotate_key,
)
from promptory.server.runner import BackgroundServer
from support.gitrepo import PromptRepo


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `condition` until true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def test_ring_accepts_a_key_added_to_its_file_after_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first, _ = add_key(path)
    ring = KeyRing.from_sources(keys_file=path, environ={}, check_interval=0.05)
    second, _ = add_key(path)
    assert ring.verify(first) is not None
    assert _until(lambda: ring.verify(second) is not None)


def test_ring_checks_the_file_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    add_key(path)
    ring = KeyRing.from_sources(keys_file=path, environ={}, check_interval=3600)
    second, _ = add_key(path)
    # Within the interval the file is not looked at again: the new key is unknown...
    assert ring.verify(second) is None
    # ...until a reload is asked for (what the web UI does after changing the file).
    ring.reload()
    assert ring.verify(second) is not None


def test_revoked_key_is_refused_after_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, record = add_key(path)
    other, _ = add_key(path)
    ring = KeyRing.from_sources(keys_file=path, environ={}, check_interval=0.05)
    revoke_key(path, record.id)
    assert _until(lambda: ring.verify(key) is None)
    assert ring.verify(other) is not None


def test_unreadable_keys_file_keeps_the_keys_read_before(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, _ = add_key(path)
    ring = KeyRing.from_sources(keys_file=path, environ={}, check_interval=0.0)
    path.write_text("{not json")
    assert ring.verify(key) is not None
    ring.reload()
    assert ring.verify(key) is not None


def test_deleted_keys_file_leaves_only_the_environment_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key, _ = add_key(path)
    env_key = generate_key()
    ring = KeyRing.from_sources(
        keys_file=path, environ={"PROMPTORY_API_KEYS": env_key}, check_interval=0.0
    )
    path.unlink()
    assert ring.verify(key) is None
    assert ring.verify(env_key) is not None


def test_keys_file_over_the_size_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"keys": [], "pad": "x" * (1024 * 1024)}))
    with pytest.raises(KeysFileError, match="over 1,048,576 bytes"):
        load_keys_file(path)


def test_rotate_keeps_scope_label_kind_and_admin(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old_key, old = add_key(path, scope="myorg", label="ci", test=True, admin=True)
    add_key(path)
    new_key, new, replaced = rotate_key(path, old.id[:8])
    assert replaced == old
    assert new_key.startswith("pm_test_")
    assert (new.scope, new.label, new.admin, new.prefix) == ("myorg", "ci", True, "pm_test_")
    ring = KeyRing(load_keys_file(path))
    assert ring.verify(old_key) is None
    assert ring.verify(new_key) is not None
    assert len(ring) == 2


def test_find_key_refuses_short_unknown_and_ambiguous_ids(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    add_key(path)
    records = load_keys_file(path)
    with pytest.raises(KeysFileError, match="too short"):
        find_key(records, "abc")
    with pytest.raises(KeysFileError, match="no key"):
        find_key(records, "ffffffffffff" if records[0].id != "ffffffffffff" else "000000000000")
    twin = records[0]
    with pytest.raises(KeysFileError, match="matches 2 keys"):
        find_key([twin, twin], twin.id)


def test_concurrent_writers_lose_no_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    made: list[str] = []

    def make() -> None:
        for _ in range(10):
            made.append(add_key(path)[0])

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ring = KeyRing(load_keys_file(path))
    assert len(ring) == 40
    assert all(ring.verify(key) is not None for key in made)


def test_server_follows_the_keys_file_without_a_restart(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("o", "a", "p")
    repo.commit()
    path = tmp_path / "keys.json"
    first, _ = add_key(path)
    ring = KeyRing.from_sources(keys_file=path, environ={}, check_interval=0.05)
    app = create_app(ServerSettings(repo=repo.path, keyring=ring, poll_interval=0.05))

    def status(key: str) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.get(f"{server.url}/api/v1/status", headers=headers, timeout=5).status_code

    with BackgroundServer(app) as server:
        assert status(first) == 200
        second, record = add_key(path)
        assert _until(lambda: status(second) == 200)
        revoke_key(path, record.id)
        assert _until(lambda: status(second) == 401)
        assert status(first) == 200
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # still private after each change
