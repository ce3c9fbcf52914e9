"""Outages: snapshot and per-call fallbacks, bounded staleness, revalidation cooldown."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from promptory import (
    APIConnectionError,
    InvalidArgumentError,
    NotFoundError,
    Prompt,
    PromptoryError,
    RenderError,
    ServerError,
)
from promptory.snapshot import write_snapshot

from .conftest import GREETING_ID, SdkFactory, wait_until
from .legacy_server import LegacyServer


@pytest.fixture
def snapshot(legacy: LegacyServer, tmp_path: Path) -> Path:
    """A snapshot of the legacy server's prompts, as `promptory pull` writes them."""
    path = tmp_path / "prompts.json"
    write_snapshot(path, [p.to_json() for p in legacy.prompts.values()], source=legacy.url)
    return path


# Snapshot fallback ---------------------------------------------------------------------------


def test_snapshot_serves_by_name_when_the_server_cannot_be_reached(
    sdk: SdkFactory, refused_url: str, snapshot: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = sdk(refused_url, fallback=snapshot, retry_count=0)
    with caplog.at_level(logging.WARNING, logger="promptory"):
        prompt = client.get_by_name("myorg", "myapp", "greeting")
    assert prompt.is_fallback is True
    assert prompt.environment == "production"
    assert prompt.render({"user_name": "Al"}) == "Hey Al\n"
    assert any("fallback" in r.getMessage() for r in caplog.records)
    assert client.cache_stats()["fallbacks_served"] == 1
    assert client.cache_stats()["total_entries"] == 0  # a fallback is never cached


def test_snapshot_never_serves_an_inactive_prompt(
    sdk: SdkFactory, legacy: LegacyServer, refused_url: str, tmp_path: Path
) -> None:
    # The server answers 404 for an inactive prompt; its snapshot copy must not be served.
    prompts = [p.to_json() for p in legacy.prompts.values()]
    for prompt in prompts:
        prompt["active"] = False
    path = tmp_path / "inactive.json"
    write_snapshot(path, prompts, source=legacy.url)
    client = sdk(refused_url, fallback=path, retry_count=0)
    with pytest.raises(APIConnectionError):
        client.get(GREETING_ID)
    with pytest.raises(APIConnectionError):
        client.get_by_name("myorg", "myapp", "greeting", environment="production")
    with pytest.raises(APIConnectionError):
        client.get_by_name("myorg", "myapp", "greeting")


def test_snapshot_renders_a_prompt_with_includes_when_the_server_is_down(
    sdk: SdkFactory, legacy: LegacyServer, refused_url: str, tmp_path: Path
) -> None:
    # The snapshot holds the included prompts: the fallback renders them locally, resolved
    # as the server resolves them (same app; the including prompt's environment first).
    outer = dict(next(iter(legacy.prompts.values())).to_json())
    outer.update(
        id="33333333-3333-4333-8333-333333333333",
        name="framed",
        body='<{% include "signature" %}|{{ who }}>',
        includes=["signature"],
    )
    inner = dict(outer, id="44444444-4444-4444-8444-444444444444", name="signature")
    inner.update(body="sig {{ who }}", includes=[])
    path = tmp_path / "with-includes.json"
    write_snapshot(path, [outer, inner], source=legacy.url)
    client = sdk(refused_url, fallback=path, retry_count=0)
    assert client.render(outer["id"], {"who": "Al"}) == "<sig Al|Al>"
    prompt = client.get(outer["id"])
    assert prompt.is_fallback
    assert prompt.render({"who": "Al"}) == "<sig Al|Al>"
    assert prompt.to_messages({"who": "Al"}) == [{"role": "system", "content": "<sig Al|Al>"}]


def test_snapshot_refuses_an_include_cycle(
    sdk: SdkFactory, legacy: LegacyServer, refused_url: str, tmp_path: Path
) -> None:
    base = dict(next(iter(legacy.prompts.values())).to_json())
    first = dict(base, id="55555555-5555-4555-8555-555555555555", name="first")
    first.update(body='{% include "second" %}', includes=["second"])
    second = dict(base, id="66666666-6666-4666-8666-666666666666", name="second")
    second.update(body='{% include "first" %}', includes=["first"])
    path = tmp_path / "cycle.json"
    write_snapshot(path, [first, second], source=legacy.url)
    client = sdk(refused_url, fallback=path, retry_count=0)
    with pytest.raises(RenderError, match="first -> second -> first"):
        client.render(first["id"])


def test_snapshot_serves_by_id_and_by_environment(
    sdk: SdkFactory, refused_url: str, snapshot: Path
) -> None:
    client = sdk(refused_url, fallback=snapshot, retry_count=0)
    assert client.get(GREETING_ID).is_fallback
    dev = client.get_by_name("myorg", "myapp", "greeting", environment="development")
    assert dev.body.startswith("[dev]")


def test_snapshot_is_not_used_while_the_server_answers(
    sdk: SdkFactory, legacy: LegacyServer, snapshot: Path
) -> None:
    prompt = sdk(legacy.url, fallback=snapshot).get(GREETING_ID)
    assert prompt.is_fallback is False


def test_snapshot_does_not_hide_a_missing_prompt(
    sdk: SdkFactory, legacy: LegacyServer, snapshot: Path
) -> None:
    legacy.remove(GREETING_ID)
    with pytest.raises(NotFoundError):
        sdk(legacy.url, fallback=snapshot).get(GREETING_ID)


def test_prompt_absent_from_the_snapshot_raises_the_original_error(
    sdk: SdkFactory, refused_url: str, snapshot: Path
) -> None:
    with pytest.raises(APIConnectionError):
        sdk(refused_url, fallback=snapshot, retry_count=0).get("not-in-snapshot")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "does not exist"),
        ("{not json", "JSON"),
        ('{"prompts": []}', "not a promptory snapshot"),
        ('{"format": "promptory-snapshot", "prompts": [{"id": 1}]}', "prompt #0"),
    ],
)
def test_bad_snapshot_file_is_refused_at_construction(
    sdk: SdkFactory, tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "snap.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidArgumentError, match=problem):
        sdk("http://127.0.0.1:9", fallback=path)


# Per-call fallback ---------------------------------------------------------------------------


def test_per_call_fallback_body_is_served_when_the_server_is_down(
    sdk: SdkFactory, refused_url: str
) -> None:
    client = sdk(refused_url, retry_count=0)
    prompt = client.get_by_name("myorg", "myapp", "greeting", fallback="Hello {{ user_name }}")
    assert prompt.is_fallback
    assert (prompt.org, prompt.app, prompt.name) == ("myorg", "myapp", "greeting")
    assert prompt.render({"user_name": "Al"}) == "Hello Al"


def test_per_call_fallback_callable_gets_the_error(sdk: SdkFactory, legacy: LegacyServer) -> None:
    legacy.fail_status = 503
    seen: list[PromptoryError] = []

    def fallback(error: PromptoryError) -> Prompt:
        seen.append(error)
        return Prompt(id="local", name="greeting", body="local copy")

    prompt = sdk(legacy.url, retry_count=0).get(GREETING_ID, fallback=fallback)
    assert prompt.body == "local copy"
    assert prompt.is_fallback
    assert isinstance(seen[0], ServerError)


def test_per_call_fallback_is_not_used_for_a_missing_prompt(
    sdk: SdkFactory, legacy: LegacyServer
) -> None:
    with pytest.raises(NotFoundError):
        sdk(legacy.url).get("missing", fallback="x")


def test_cached_copy_is_preferred_to_the_fallback(sdk: SdkFactory, legacy: LegacyServer) -> None:
    client = sdk(legacy.url, cache_ttl=0, retry_count=0)
    cached = client.get(GREETING_ID)
    legacy.fail_status = 503
    assert client.get(GREETING_ID, fallback="fallback body") is cached


# Bounded staleness ---------------------------------------------------------------------------


def test_stale_copy_within_max_stale_is_served_when_the_server_fails(
    sdk: SdkFactory, legacy: LegacyServer
) -> None:
    client = sdk(legacy.url, cache_ttl=0.05, max_stale=30, retry_count=0)
    cached = client.get(GREETING_ID)
    legacy.fail_status = 503
    time.sleep(0.1)
    assert client.get(GREETING_ID) is cached


def test_stale_copy_past_max_stale_is_not_served(sdk: SdkFactory, legacy: LegacyServer) -> None:
    client = sdk(legacy.url, cache_ttl=0.05, max_stale=0.05, retry_count=0)
    client.get(GREETING_ID)
    legacy.fail_status = 503
    time.sleep(0.15)
    with pytest.raises(ServerError):
        client.get(GREETING_ID)


def test_past_max_stale_a_healthy_server_is_asked_in_the_caller(
    sdk: SdkFactory, legacy: LegacyServer
) -> None:
    client = sdk(legacy.url, cache_ttl=0.05, max_stale=0.05)
    first = client.get(GREETING_ID)
    time.sleep(0.15)
    assert client.get(GREETING_ID) is first  # a 304, answered before returning
    assert client.cache_stats()["in_flight"] == 0
    assert client.cache_stats()["fresh_entries"] == 1


# Cooldown ------------------------------------------------------------------------------------


def test_failing_revalidations_back_off_instead_of_retrying_on_every_hit(
    sdk: SdkFactory, legacy: LegacyServer
) -> None:
    client = sdk(legacy.url, cache_ttl=0.02, retry_count=0)
    client.get(GREETING_ID)
    legacy.fail_status = 503
    legacy.reset_requests()
    deadline = time.monotonic() + 0.3  # the first cooldown is at least 0.5 s
    hits = 0
    while time.monotonic() < deadline:
        client.get(GREETING_ID)
        hits += 1
        time.sleep(0.005)
    client.wait_idle()
    # About 60 hits fit in the window at 5 ms each; a loaded machine may manage far fewer.
    # Ten, spread over the 0.3 s, still include hits long after the failed revalidation.
    assert hits >= 10
    assert legacy.count() == 1  # the first failure starts a cooldown of at least 0.5 s
    assert client.cache_stats()["revalidation_failures"] == 1


def test_revalidation_resumes_after_the_cooldown(sdk: SdkFactory, legacy: LegacyServer) -> None:
    client = sdk(legacy.url, cache_ttl=0.02, retry_count=0)
    client.get(GREETING_ID)
    legacy.fail_status = 503
    time.sleep(0.05)
    client.get(GREETING_ID)
    client.wait_idle()
    legacy.fail_status = None
    legacy.reset_requests()

    def revalidated() -> bool:
        client.get(GREETING_ID)
        return legacy.count() > 0

    wait_until(revalidated, timeout=3.0, what="a revalidation after the cooldown")
    client.wait_idle()
    stats = client.cache_stats()
    assert stats["revalidations"] >= 2


def test_snapshot_file_round_trips(snapshot: Path) -> None:
    data = json.loads(snapshot.read_text())
    assert data["format"] == "promptory-snapshot"
    assert len(data["prompts"]) == 3
