"""The cache of compiled bodies: least recently used first out, bounded in count and in the
characters of the bodies it holds."""

from __future__ import annotations

from promptory import rendering
from promptory.rendering import (
    COMPILED_MAX_CHARS,
    COMPILED_MAX_ENTRIES,
    CompiledCache,
    compile_body,
)


def test_the_bodies_kept_never_hold_more_characters_than_the_bound() -> None:
    cache = CompiledCache(max_entries=1000, max_chars=10_000)
    bodies = [f"{index:02} " + "x" * 997 for index in range(50)]  # 1,000 characters each
    for body in bodies:
        cache.put(body, compile_body(body))
        assert cache.chars <= 10_000
    assert [body in cache for body in bodies] == [False] * 40 + [True] * 10
    assert cache.chars == 10_000


def test_the_bodies_kept_never_number_more_than_the_bound() -> None:
    cache = CompiledCache(max_entries=3, max_chars=10_000)
    for index in range(10):
        cache.put(str(index), compile_body(str(index)))
    assert len(cache) == 3
    assert [str(i) in cache for i in range(10)] == [False] * 7 + [True] * 3


def test_a_body_used_again_is_kept_over_older_unused_ones() -> None:
    cache = CompiledCache(max_entries=2, max_chars=10_000)
    cache.put("a", compile_body("a"))
    cache.put("b", compile_body("b"))
    assert cache.get("a") is not None
    cache.put("c", compile_body("c"))
    assert "a" in cache and "c" in cache and "b" not in cache


def test_a_body_longer_than_the_whole_bound_is_not_kept() -> None:
    cache = CompiledCache(max_entries=10, max_chars=100)
    cache.put("small", compile_body("small"))
    cache.put("y" * 101, compile_body("y" * 101))
    assert "small" in cache and len(cache) == 1 and cache.chars == 5


def test_the_shared_cache_has_the_documented_bounds_and_keeps_to_them() -> None:
    shared = rendering._COMPILED
    assert (shared.max_entries, shared.max_chars) == (COMPILED_MAX_ENTRIES, 64_000_000)
    assert COMPILED_MAX_CHARS == 64_000_000
    body = "{{ name }} " + "z" * 100_000
    compile_body(body)
    assert body in shared
    assert shared.chars <= COMPILED_MAX_CHARS
