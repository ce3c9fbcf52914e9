"""API keys: made once, kept as hashes in a private file, verified by digest, scoped."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from promptory.server.keys import (
    KeyRecord,
    KeyRing,
    KeysEnvError,
    KeysFileError,
    add_key,
    generate_key,
    hash_key,
    load_keys_file,
)


def test_keys_have_their_prefix_and_32_random_bytes() -> None:
    live, test = generate_key(), generate_key(test=True)
    assert live.startswith("pm_live_")
    assert test.startswith("pm_test_")
    assert len(live) == len("pm_live_") + 43
    assert generate_key() != generate_key()


def test_keys_file_holds_only_hashes_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "config" / "keys.json"
    key, record = add_key(path, scope="myorg/myapp", label="ci")
    text = path.read_text()
    assert key not in text
    data = json.loads(text)
    assert data == {
        "keys": [
            {
                "id": hash_key(key)[:12],
                "sha256": hash_key(key),
                "scope": "myorg/myapp",
                "created_at": record.created_at,
                "label": "ci",
                "prefix": "pm_live_",
                "admin": False,
            }
        ]
    }
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_adding_keys_keeps_the_earlier_ones(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first, _ = add_key(path)
    second, _ = add_key(path, test=True)
    ring = KeyRing(load_keys_file(path))
    assert ring.verify(first) is not None
    assert ring.verify(second) is not None
    assert len(ring) == 2


def test_verify_finds_the_record_of_a_known_key_only() -> None:
    key = generate_key()
    record = KeyRecord.for_key(key)
    ring = KeyRing([record])
    assert ring.verify(key) == record
    assert ring.verify(key + "x") is None
    assert ring.verify("") is None
    assert ring.verify("x" * 10_000) is None


def test_keys_from_the_environment_are_unscoped() -> None:
    first, second = generate_key(), generate_key()
    ring = KeyRing.from_sources(environ={"PROMPTORY_API_KEYS": f" {first}, {second} ,"})
    assert len(ring) == 2
    record = ring.verify(second)
    assert record is not None
    assert record.unscoped


@pytest.mark.parametrize(
    "bad", ["x", "pm_live_short", "sk_live_" + "a" * 43, "pm_live_" + "a" * 40 + " b"]
)
def test_an_environment_entry_that_is_not_a_key_is_refused_by_position(bad: str) -> None:
    good = generate_key()
    with pytest.raises(KeysEnvError) as caught:
        KeyRing.from_sources(environ={"PROMPTORY_API_KEYS": f"{good},{bad}"})
    message = str(caught.value)
    assert "entry 2 of 2" in message
    assert bad not in message
    assert good not in message


def test_serve_refuses_a_bad_environment_key_before_starting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMPTORY_API_KEYS"}
    env["PROMPTORY_API_KEYS"] = "hunter2"
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "promptory", "serve", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert "PROMPTORY_API_KEYS: entry 1 of 1 is not an API key" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_missing_keys_file_holds_no_keys(tmp_path: Path) -> None:
    assert load_keys_file(tmp_path / "absent.json") == []


def test_corrupt_keys_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"keys": [{"sha256": "short"}]}')
    with pytest.raises(KeysFileError, match=r"keys\.json"):
        load_keys_file(path)


@pytest.mark.parametrize(
    ("scope", "org", "app", "allowed"),
    [
        (None, "any", "thing", True),
        ("myorg", "myorg", "anything", True),
        ("myorg", "other", "myapp", False),
        ("myorg/myapp", "myorg", "myapp", True),
        ("myorg/myapp", "myorg", "other", False),
        ("myorg/myapp", "other", "myapp", False),
    ],
)
def test_scope_allows_its_org_or_app_only(
    scope: str | None, org: str, app: str, allowed: bool
) -> None:
    assert KeyRecord.for_key(generate_key(), scope=scope).allows(org, app) is allowed


@pytest.mark.parametrize("scope", ["", "a/b/c", "../x", "my org"])
def test_malformed_scope_is_refused(scope: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scope"):
        add_key(tmp_path / "keys.json", scope=scope)
