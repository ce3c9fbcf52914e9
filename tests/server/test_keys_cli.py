"""``promptory keys list | revoke | rotate`` and ``keys create --admin``, run for real."""

from __future__ import annotations

import json
from pathlib import Path

from promptory.server.keys import KeyRing, load_keys_file

from .test_cli import run


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
