"""The clients over real sockets: every test runs for PromptClient and AsyncPromptClient."""

from __future__ import annotations

import logging
import threading
from urllib.parse import unquote

import httpx
import pytest

from promptory import (
    APIConnectionError,
    AuthenticationError,
    ForbiddenError,
    InvalidArgumentError,
    MalformedResponseError,
    NotFoundError,
    Prompt,
    PromptClient,
    PromptoryError,
    RateLimitError,
    RenderError,
)

from .conftest import API_KEY, SdkFactory, wait_until
from .legacy_server import LegacyPrompt, LegacyServer


def client_threads() -> set[int | None]:
    """The threads promptory's clients started (the test servers have threads of their own)."""
    return {t.ident for t in threading.enumerate() if t.name.startswith("promptory")}


# Fetching ------------------------------------------------------------------------------------


def test_get_by_id_returns_the_prompt_with_every_field(sdk: SdkFactory, backend) -> None:
    prompt = sdk(backend.url).get(backend.greeting_id)
    assert isinstance(prompt, Prompt)
    assert (prompt.id, prompt.name, prompt.org, prompt.app) == (
        backend.greeting_id,
        "greeting",
        "myorg",
        "myapp",
    )
    assert prompt.environment == "production"
    assert prompt.meta["id"] == backend.greeting_id
    assert prompt.body.startswith("{% if formal %}")


def test_get_by_name_without_environment_returns_the_most_promoted(
    sdk: SdkFactory, backend
) -> None:
    prompt = sdk(backend.url).get_by_name("myorg", "myapp", "greeting")
    assert prompt.environment == "production"


def test_get_by_name_with_environment_returns_that_variant(sdk: SdkFactory, backend) -> None:
    prompt = sdk(backend.url).get_by_name("myorg", "myapp", "greeting", environment="development")
    assert prompt.environment == "development"
    assert prompt.body.startswith("[dev]")


def test_environment_variants_are_cached_separately(sdk: SdkFactory, backend) -> None:
    client = sdk(backend.url)
    any_env = client.get_by_name("myorg", "myapp", "greeting")
    dev = client.get_by_name("myorg", "myapp", "greeting", environment="development")
    assert any_env.body != dev.body
    assert client.cache_stats()["total_entries"] == 2


def test_unknown_environment_is_refused_before_any_request(sdk: SdkFactory, backend) -> None:
    client = sdk(backend.url)
    with pytest.raises(InvalidArgumentError, match="environment must be one of"):
        client.get_by_name("myorg", "myapp", "greeting", environment="prod")
    assert backend.count() == 0


def test_ref_and_fallback_are_keyword_only_on_a_hit_and_a_miss(sdk: SdkFactory, backend) -> None:
    client = sdk(backend.url)
    with pytest.raises(TypeError):  # a miss
        client.get_by_name("myorg", "myapp", "greeting", None, None)
    with pytest.raises(TypeError):
        client.get(backend.greeting_id, None)
    client.get_by_name("myorg", "myapp", "greeting")
    client.get(backend.greeting_id)
    with pytest.raises(TypeError):  # a warm hit on the same key
        client.get_by_name("myorg", "myapp", "greeting", None, None)
    with pytest.raises(TypeError):
        client.get(backend.greeting_id, None)


def test_the_class_methods_answer_as_the_instance_does(backend) -> None:
    with PromptClient(backend.url, API_KEY) as client:
        by_name = PromptClient.get_by_name(client, "myorg", "myapp", "greeting")
        assert by_name is client.get_by_name("myorg", "myapp", "greeting")
        assert PromptClient.get(client, by_name.id) is client.get(by_name.id)
        assert backend.count() == 2  # one fetch per key; the rest were hits


def test_unknown_id_raises_not_found(sdk: SdkFactory, backend) -> None:
    with pytest.raises(NotFoundError) as caught:
        sdk(backend.url).get("missing-id")
    assert caught.value.status_code == 404
    assert "missing-id" in str(caught.value)


@pytest.mark.parametrize("prompt_id", ["a/../b", "..", ".", "a?b=c", "a#b", "x y"])
def test_ids_are_sent_as_one_percent_encoded_path_segment(
    sdk: SdkFactory, legacy: LegacyServer, prompt_id: str
) -> None:
    with pytest.raises(NotFoundError):
        sdk(legacy.url).get(prompt_id)
    (request,) = legacy.requests
    assert request.path.startswith("/api/v1/prompts/")
    segment = request.path[len("/api/v1/prompts/") :]
    assert "/" not in segment and "?" not in segment and "#" not in segment
    assert segment not in ("", ".", "..")  # no dot-segment for a URL normalizer to collapse
    assert unquote(segment) == prompt_id


@pytest.mark.parametrize("prompt_id", ["by-name/myorg/myapp/greeting", "x/render", "../health"])
def test_an_id_holding_a_slash_never_reaches_another_route(
    sdk: SdkFactory, backend, prompt_id: str
) -> None:
    with pytest.raises(NotFoundError):
        sdk(backend.url).get(prompt_id)


def test_every_request_says_who_it_is(sdk: SdkFactory, legacy: LegacyServer) -> None:
    sdk(legacy.url).get_by_name("myorg", "myapp", "greeting")
    (request,) = legacy.requests
    assert request.headers["User-Agent"].startswith("promptory-python/")
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


# Errors --------------------------------------------------------------------------------------


def test_wrong_key_raises_authentication_error(sdk: SdkFactory, backend) -> None:
    client = sdk(backend.url, api_key="pm_live_" + "w" * 40)
    with pytest.raises(AuthenticationError) as caught:
        client.get(backend.greeting_id)
    assert caught.value.status_code == 401
    assert "w" * 10 not in str(caught.value)


def test_forbidden_app_raises_forbidden_error_from_the_detail_envelope(
    sdk: SdkFactory, legacy: LegacyServer
) -> None:
    legacy.forbidden_apps.add("myapp")
    with pytest.raises(ForbiddenError) as caught:
        sdk(legacy.url).get_by_name("myorg", "myapp", "greeting")
    assert caught.value.status_code == 403
    assert caught.value.code == "FORBIDDEN"
    assert "API key not valid for this app" in str(caught.value)


@pytest.mark.parametrize("retry_after", ["30", "Wed, 21 Oct 2099 07:28:00 GMT"])
def test_rate_limit_raises_at_once_with_retry_after(
    sdk: SdkFactory, legacy: LegacyServer, retry_after: str
) -> None:
    legacy.rate_limited_retry_after = retry_after
    with pytest.raises(RateLimitError) as caught:
        sdk(legacy.url, retry_count=3).get_by_name("myorg", "myapp", "greeting")
    assert caught.value.status_code == 429
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 0
    assert legacy.count() == 1  # not retried, not slept on


def test_connection_refused_raises_our_error_with_httpx_chained(
    sdk: SdkFactory, refused_url: str
) -> None:
    with pytest.raises(APIConnectionError) as caught:
        sdk(refused_url, retry_count=1, timeout=2).get("anything")
    assert caught.value.status_code is None
    assert isinstance(caught.value.__cause__, httpx.HTTPError)
    assert "anything" in str(caught.value)


def test_closed_client_refuses_fetches(sdk: SdkFactory, backend) -> None:
    client = sdk(backend.url)
    client.close()
    with pytest.raises(PromptoryError, match="closed"):
        client.get(backend.greeting_id)


# Rendering -----------------------------------------------------------------------------------


def test_render_shortcut_renders_with_variables(sdk: SdkFactory, backend) -> None:
    rendered = sdk(backend.url).render(backend.greeting_id, {"user_name": "Alice", "formal": True})
    assert rendered == "Dear Alice\n"


def test_render_of_a_prompt_with_includes_goes_to_the_server(
    sdk: SdkFactory, legacy: LegacyServer
) -> None:
    legacy.add(LegacyPrompt(name="preamble", body="Be kind."))
    composed = legacy.add(
        LegacyPrompt(
            name="composed", body='{% include "preamble" %} Hi {{ n }}', includes=["preamble"]
        )
    )
    client = sdk(legacy.url)
    assert client.render(composed.id, {"n": "Al"}) == "Be kind. Hi Al"
    assert legacy.count("/render") == 1
    with pytest.raises(RenderError, match=r"client\.render"):
        client.get(composed.id).render({"n": "Al"})


def test_render_without_includes_needs_no_render_request(sdk: SdkFactory, backend) -> None:
    client = sdk(backend.url)
    client.render(backend.greeting_id, {"user_name": "A"})
    client.render(backend.greeting_id, {"user_name": "B"})
    assert backend.count("/render") == 0
    assert backend.count() == 1


def test_server_render_error_raises_render_error(sdk: SdkFactory, legacy: LegacyServer) -> None:
    legacy.add(LegacyPrompt(name="part", body="{{ 1 / 0 }}"))
    broken = legacy.add(LegacyPrompt(name="broken", body='{% include "part" %}', includes=["part"]))
    with pytest.raises(RenderError) as caught:
        sdk(legacy.url).render(broken.id)
    assert caught.value.status_code == 400


# The cache over the wire ---------------------------------------------------------------------


def test_fresh_hit_makes_no_request_and_starts_no_thread(sdk: SdkFactory, backend) -> None:
    client = sdk(backend.url)
    first = client.get(backend.greeting_id)
    requests, threads = backend.count(), client_threads()
    for _ in range(50):
        assert client.get(backend.greeting_id) is first
    assert backend.count() == requests
    assert client_threads() == threads
    assert client.cache_stats()["hits"] == 50


def test_stale_hit_returns_at_once_and_revalidates_with_if_none_match(
    sdk: SdkFactory, backend
) -> None:
    client = sdk(backend.url, cache_ttl=0.05)
    first = client.get(backend.greeting_id)
    wait_until(lambda: client.cache_stats()["stale_entries"] == 1, what="the entry to go stale")
    age_when_stale = client.cache_stats()["oldest_age_seconds"]
    assert client.get(backend.greeting_id) is first
    client.wait_idle()
    assert backend.conditional_count() == 1
    stats = client.cache_stats()
    assert stats["total_entries"] == 1
    # The 304 restarted the entry's age: it is younger now than when it was found stale
    # (without the restart it could only have grown).
    assert stats["oldest_age_seconds"] < age_when_stale
    assert client.get(backend.greeting_id) is first  # the same data, kept


def test_a_change_on_the_server_reaches_the_cache_after_revalidation(
    sdk: SdkFactory, backend
) -> None:
    client = sdk(backend.url, cache_ttl=0.05)
    client.get(backend.greeting_id)
    backend.update_body(backend.greeting_id, "Changed {{ user_name }}")
    wait_until(lambda: client.cache_stats()["stale_entries"] == 1, what="staleness")
    client.get(backend.greeting_id)  # stale, starts the revalidation
    client.wait_idle()
    assert client.get(backend.greeting_id).body == "Changed {{ user_name }}"


def test_ttl_zero_revalidates_in_the_caller_every_time(sdk: SdkFactory, backend) -> None:
    client = sdk(backend.url, cache_ttl=0)
    first = client.get(backend.greeting_id)
    for _ in range(3):
        assert client.get(backend.greeting_id) is first  # 304: same object
    assert backend.count() == 4
    assert backend.conditional_count() == 3


def test_max_size_zero_fetches_every_time(sdk: SdkFactory, backend) -> None:
    client = sdk(backend.url, cache_max_size=0)
    for _ in range(3):
        client.get(backend.greeting_id)
    assert backend.count() == 3
    assert backend.conditional_count() == 0
    assert client.cache_stats()["total_entries"] == 0


def test_deleted_prompt_is_evicted_on_revalidation(
    sdk: SdkFactory, backend, caplog: pytest.LogCaptureFixture
) -> None:
    client = sdk(backend.url, cache_ttl=0.05)
    client.get(backend.greeting_id)
    backend.delete(backend.greeting_id)
    wait_until(lambda: client.cache_stats()["stale_entries"] == 1, what="staleness")
    with caplog.at_level(logging.WARNING, logger="promptory"):
        client.get(backend.greeting_id)
        client.wait_idle()
    assert client.cache_stats()["total_entries"] == 0
    assert any("not found" in r.getMessage() for r in caplog.records)
    with pytest.raises(NotFoundError):
        client.get(backend.greeting_id)


def test_revoked_key_stops_reading_through_the_cache(sdk: SdkFactory, legacy: LegacyServer) -> None:
    client = sdk(legacy.url, cache_ttl=0)
    prompt = client.get_by_name("myorg", "myapp", "greeting")
    legacy.api_key = "pm_live_" + "n" * 40  # the client's key is revoked
    with pytest.raises(AuthenticationError):
        client.get_by_name("myorg", "myapp", "greeting")
    assert client.cache_stats()["total_entries"] == 0
    # The evicted copy is gone for good: with the key restored, the next call asks the
    # server afresh (no If-None-Match: nothing is cached to revalidate).
    legacy.api_key = API_KEY
    legacy.reset_requests()
    again = client.get_by_name("myorg", "myapp", "greeting")
    assert again is not prompt
    assert legacy.count() == 1
    assert "if-none-match" not in {name.lower() for name in legacy.requests[0].headers}


def test_server_down_serves_the_cached_copy_with_one_warning(
    sdk: SdkFactory, legacy: LegacyServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = sdk(legacy.url, cache_ttl=0, retry_count=0, timeout=2)
    prompt = client.get_by_name("myorg", "myapp", "greeting")
    legacy.rate_limited_retry_after = "5"
    with caplog.at_level(logging.WARNING, logger="promptory"):
        assert client.get_by_name("myorg", "myapp", "greeting") is prompt
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "serving the cached copy" in warnings[0].getMessage()


def test_malformed_answer_is_not_cached(sdk: SdkFactory, legacy: LegacyServer) -> None:
    legacy.add(LegacyPrompt(name="bad", body="x", version="1.0.0"))
    bad = next(p for p in legacy.prompts.values() if p.name == "bad")
    bad.model = "not-a-dict"  # type: ignore[assignment]
    client = sdk(legacy.url)
    with pytest.raises(MalformedResponseError, match="model"):
        client.get(bad.id)
    assert client.cache_stats()["total_entries"] == 0


def test_cache_stats_has_the_spec_keys(sdk: SdkFactory, backend) -> None:
    client = sdk(backend.url)
    client.get(backend.greeting_id)
    stats = client.cache_stats()
    for key in (
        "total_entries",
        "fresh_entries",
        "stale_entries",
        "max_size",
        "ttl",
        "oldest_age_seconds",
    ):
        assert key in stats
    assert stats["total_entries"] == 1
    assert stats["max_size"] == 1000
    assert stats["ttl"] == 300


def test_cache_invalidate_by_name_removes_entries_fetched_by_id_and_by_name(
    sdk: SdkFactory, backend
) -> None:
    client = sdk(backend.url)
    client.get(backend.greeting_id)
    client.get_by_name("myorg", "myapp", "greeting")
    client.get_by_name("myorg", "myapp", "greeting", environment="development")
    client.get_by_name("myorg", "myapp", "meditation_script_relax")
    assert client.cache_invalidate("greeting") == 3
    assert client.cache_stats()["total_entries"] == 1


@pytest.mark.parametrize(
    ("pattern", "removed"),
    [("myorg", 2), ("myorg/myapp", 2), ("myorg/myapp/greeting", 1), ("myorg/my", 0), ("other", 0)],
)
def test_cache_invalidate_matches_whole_segments(
    sdk: SdkFactory, backend, pattern: str, removed: int
) -> None:
    client = sdk(backend.url)
    client.get_by_name("myorg", "myapp", "greeting")
    client.get_by_name("myorg", "myapp", "meditation_script_relax")
    assert client.cache_invalidate(pattern) == removed


def test_cache_invalidate_by_id_prefix(sdk: SdkFactory, backend) -> None:
    client = sdk(backend.url)
    client.get(backend.greeting_id)
    assert client.cache_invalidate(backend.greeting_id[:8]) == 1


def test_cache_invalidate_by_id_prefix_ignores_case(sdk: SdkFactory, legacy: LegacyServer) -> None:
    # UUIDs are case-insensitive (RFC 9562 §4): "D23F0824" names what "d23f0824" names.
    prompt_id = "d23f0824-5c4e-4f8a-9b1d-0e2a7c6b5f3e"
    legacy.add(LegacyPrompt(id=prompt_id, name="cased", body="x"))
    client = sdk(legacy.url)
    client.get(prompt_id)
    assert client.cache_invalidate("D23F0824") == 1
    assert client.cache_stats()["total_entries"] == 0


def test_cache_invalidate_all_empties_the_cache(sdk: SdkFactory, backend) -> None:
    client = sdk(backend.url)
    client.get(backend.greeting_id)
    client.get_by_name("myorg", "myapp", "greeting")
    assert client.cache_invalidate_all() == 2
    assert client.cache_invalidate_all() == 0
    client.get(backend.greeting_id)
    assert backend.count() == 3


def test_invalidate_with_an_empty_name_is_refused(sdk: SdkFactory, backend) -> None:
    with pytest.raises(InvalidArgumentError, match="cache_invalidate_all"):
        sdk(backend.url).cache_invalidate("")
