"""The session table: bounded in count, ended by idleness, age, sign out or revocation."""

from __future__ import annotations

import pytest

from promptory.server.ui.sessions import SessionTable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_is_found_by_its_token_only() -> None:
    table = SessionTable()
    token, session = table.create("a" * 64)
    assert table.get(token) is session
    assert table.get(token + "x") is None
    assert table.get("") is None
    assert table.get(None) is None
    assert table.get("x" * 10_000) is None


def test_the_table_keeps_at_most_max_sessions_dropping_the_least_recently_used() -> None:
    table = SessionTable(max_sessions=3)
    tokens = [table.create(f"{i:064x}")[0] for i in range(3)]
    assert table.get(tokens[0]) is not None  # used: the oldest unused is now tokens[1]
    newest, _ = table.create("f" * 64)
    assert len(table) == 3
    assert table.get(tokens[1]) is None
    assert table.get(tokens[0]) is not None
    assert table.get(newest) is not None


def test_an_idle_session_ends() -> None:
    clock = Clock()
    table = SessionTable(idle_seconds=60, clock=clock)
    token, _ = table.create("a" * 64)
    clock.now += 59
    assert table.get(token) is not None
    clock.now += 59  # 59 s after the last use: still alive
    assert table.get(token) is not None
    clock.now += 61
    assert table.get(token) is None
    assert len(table) == 0


def test_a_session_ends_at_its_lifetime_however_busy() -> None:
    clock = Clock()
    table = SessionTable(idle_seconds=60, lifetime_seconds=100, clock=clock)
    token, _ = table.create("a" * 64)
    for _ in range(3):
        clock.now += 30
        assert table.get(token) is not None
    clock.now += 30
    assert table.get(token) is None


def test_signing_in_sweeps_expired_sessions() -> None:
    clock = Clock()
    table = SessionTable(idle_seconds=10, clock=clock)
    for i in range(5):
        table.create(f"{i:064x}")
    clock.now += 11
    table.create("f" * 64)
    assert len(table) == 1


def test_drop_and_drop_key_end_sessions() -> None:
    table = SessionTable()
    first, _ = table.create("a" * 64)
    second, _ = table.create("a" * 64)
    other, _ = table.create("b" * 64)
    table.drop(first)
    assert table.get(first) is None
    assert table.drop_key("a" * 64) == 1
    assert table.get(second) is None
    assert table.get(other) is not None


def test_csrf_tokens_differ_per_session_and_compare_exactly() -> None:
    table = SessionTable()
    _, one = table.create("a" * 64)
    _, two = table.create("a" * 64)
    assert one.csrf != two.csrf
    assert one.csrf_matches(one.csrf)
    assert not one.csrf_matches(two.csrf)
    assert not one.csrf_matches("")
    assert not one.csrf_matches(None)


def test_a_table_of_no_sessions_is_refused() -> None:
    with pytest.raises(ValueError, match="max_sessions"):
        SessionTable(max_sessions=0)
