"""``promptory keys list | revoke | rotate`` and ``keys create --admin``, run for real."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from promptory.server.keys import KeyRing, load_keys_file
from support.gitrepo import PromptRepo

from .test_cli import _env, free_port, run


def _create(tmp_path: Path, keys_file: Path, *extra: str) -> str:
    result = run(tmp_path, "keys", "create", "--keys-file", str(keys_file), *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_keys_list_shows_fingerprint_kind_scope_admin_and_never_the_secret(
    tmp_path: Path,
) -> None:
    keys_file = tmp_path / "keys.json"
    admin = _create(tmp_path, keys_file, "--admin", "--label", "ops")
    scoped = _create(tmp_path, keys_file, "--scope", "myorg/myapp", "--test")
    result = run(tmp_path, "keys", "list", "--keys-file", str(keys_file))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "KIND", "SCOPE", "CREATED", "ADMIN", "LABEL"]
    first, second = (line.split() for line in lines[1:])
    records = load_keys_file(keys_file)
    assert first[:3] == [records[0].id, "live", "*"]
    assert first[4:] == ["yes", "ops"]
    assert second[:3] == [records[1].id, "test", "myorg/myapp"]
    assert second[4] == "no"
    for secret in (admin, scoped):
        assert secret not in result.stdout + result.stderr
    for record in records:
        assert record.sha256 not in result.stdout  # the digest is not shown either
    listed = json.loads(
        run(tmp_path, "keys", "list", "--keys-file", str(keys_file), "--json").stdout
    )
    assert [row["admin"] for row in listed] == [True, False]
    assert all("sha256" not in row for row in listed)


def test_keys_revoke_removes_only_that_key(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    kept = _create(tmp_path, keys_file)
    gone = _create(tmp_path, keys_file)
    gone_id = load_keys_file(keys_file)[1].id
    result = run(tmp_path, "keys", "revoke", gone_id, "--keys-file", str(keys_file))
    assert result.returncode == 0, result.stderr
    assert f"key {gone_id}" in result.stderr
    ring = KeyRing(load_keys_file(keys_file))
    assert ring.verify(gone) is None
    assert ring.verify(kept) is not None


def test_keys_revoke_of_an_unknown_id_fails_and_says_where_to_look(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    _create(tmp_path, keys_file)
    result = run(tmp_path, "keys", "revoke", "0123456789ab", "--keys-file", str(keys_file))
    assert result.returncode == 1
    assert "promptory keys list" in result.stderr


def test_keys_rotate_prints_a_new_key_once_and_revokes_the_old(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    old = _create(tmp_path, keys_file, "--scope", "myorg")
    old_id = load_keys_file(keys_file)[0].id
    result = run(tmp_path, "keys", "rotate", old_id, "--keys-file", str(keys_file))
    assert result.returncode == 0, result.stderr
    new = result.stdout.strip()
    assert new.startswith("pm_live_")
    assert new not in result.stderr
    ring = KeyRing(load_keys_file(keys_file))
    assert ring.verify(old) is None
    record = ring.verify(new)
    assert record is not None
    assert record.scope == "myorg"


def test_a_running_serve_follows_keys_made_and_revoked_by_the_cli(tmp_path: Path) -> None:
    repo = PromptRepo(tmp_path / "repo")
    repo.write_prompt("o", "a", "p")
    repo.commit()
    keys_file = tmp_path / "keys.json"
    first = _create(tmp_path, keys_file)
    port = free_port()
    command = [sys.executable, "-m", "promptory", "serve", str(repo.path), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--keys-file", str(keys_file), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
    )
    url = f"http://127.0.0.1:{port}/api/v1/status"

    def status(key: str) -> int | None:
        try:
            return httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code
        except httpx.TransportError:
            return None

    def until(key: str, wanted: int) -> None:
        deadline = time.monotonic() + 30
        while status(key) != wanted:
            assert process.poll() is None, "the server stopped"
            assert time.monotonic() < deadline, f"no {wanted} within 30 s"
            time.sleep(0.05)

    try:
        until(first, 200)
        second = _create(tmp_path, keys_file, "--test")
        until(second, 200)  # within the 1 s check interval, without a restart
        second_id = load_keys_file(keys_file)[1].id
        assert (
            run(tmp_path, "keys", "revoke", second_id, "--keys-file", str(keys_file)).returncode
            == 0
        )
        until(second, 401)
        assert status(first) == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    assert "Traceback" not in stderr
    assert second not in stderr
