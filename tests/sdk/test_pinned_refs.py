"""Pinning to history: `ref=` serves a prompt as it was at a tag or commit, cached for good."""

from __future__ import annotations

import time

import pytest

from promptory import NotFoundError

from .conftest import GREETING_ID, PromptoryBackend, SdkFactory, write_greeting


@pytest.fixture
def history(promptory_backend: PromptoryBackend) -> tuple[PromptoryBackend, str]:
    """The backend with a tag `v1` on its first commit and a newer greeting on top."""
    backend = promptory_backend
    first = str(backend.repo.repo.head.target)
    backend.repo.tag("v1")
    write_greeting(backend.repo, "Version two for {{ user_name }}", version="2.0.0")
    backend._commit_and_wait("greeting v2")
    return backend, first


def test_ref_by_tag_and_sha_serves_the_old_version(sdk: SdkFactory, history) -> None:
    backend, first = history
    client = sdk(backend.url)
    assert client.get(GREETING_ID).version == "2.0.0"
    assert client.get(GREETING_ID, ref="v1").version == "1.2.0"
    assert client.get_by_name("myorg", "myapp", "greeting", ref=first).version == "1.2.0"
    assert client.cache_stats()["total_entries"] == 3


def test_a_pinned_prompt_never_goes_stale(sdk: SdkFactory, history) -> None:
    backend, _ = history
    client = sdk(backend.url, cache_ttl=0.05)
    pinned = client.get(GREETING_ID, ref="v1")
    time.sleep(0.1)
    requests = backend.count()
    assert client.get(GREETING_ID, ref="v1") is pinned
    assert backend.count() == requests
    assert client.cache_stats()["stale_entries"] == 0


def test_render_at_a_ref_uses_that_version(sdk: SdkFactory, history) -> None:
    backend, _ = history
    client = sdk(backend.url)
    assert client.render(GREETING_ID, {"user_name": "Al"}, ref="v1") == "Hey Al\n"
    assert client.render(GREETING_ID, {"user_name": "Al"}) == "Version two for Al"


def test_unknown_ref_is_not_found(sdk: SdkFactory, history) -> None:
    backend, _ = history
    with pytest.raises(NotFoundError) as caught:
        sdk(backend.url).get(GREETING_ID, ref="no-such-tag")
    assert caught.value.code == "REF_NOT_FOUND"
