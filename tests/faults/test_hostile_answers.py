"""Hostile answers over real sockets: JSON nested past any recursion limit, a gzip bomb, an
endless body. Each ends in a `PromptoryError` subclass, so callers' handlers and fallbacks
apply, and the client holds at most `max_response_bytes` of it (issue 9, items 5 and 6).

Every test runs once per client kind (sync and async).
"""

from __future__ import annotations

import time

import pytest

from promptory import (
    MalformedResponseError,
    NotFoundError,
    ResponseTooLargeError,
    ServerError,
)
from promptory._options import MAX_RESPONSE_BYTES

from .conftest import PROMPT_ID, ClientFactory
from .proxy import FaultProxy


@pytest.mark.parametrize(
    ("status", "error"), [("200", MalformedResponseError), ("404", NotFoundError)]
)
def test_deep_json_in_an_answer_raises_the_sdk_error_for_its_status(
    status: str, error: type[Exception], proxy: FaultProxy, make_client: ClientFactory
) -> None:
    client = make_client(proxy.url, retry_count=0)
    proxy.set_mode(f"deep:{status}")
    with pytest.raises(error):
        client.get(PROMPT_ID)
    with pytest.raises(error):
        client.get_by_name("myorg", "myapp", "welcome")


def test_deep_json_in_a_503_is_a_server_error_and_the_fallback_applies(
    proxy: FaultProxy, make_client: ClientFactory
) -> None:
    client = make_client(proxy.url, retry_count=0)
    proxy.set_mode("deep:503")
    with pytest.raises(ServerError):
        client.get(PROMPT_ID)
    fallen_back = client.get(PROMPT_ID, fallback="Hello.")
    assert fallen_back.is_fallback
    assert fallen_back.body == "Hello."


def test_deep_json_in_a_listing_is_a_malformed_response(
    proxy: FaultProxy, make_client: ClientFactory
) -> None:
    client = make_client(proxy.url, retry_count=0)
    proxy.set_mode("deep:200")
    with pytest.raises(MalformedResponseError):
        client.list_prompts()


def test_a_deeply_nested_model_is_a_malformed_response(
    proxy: FaultProxy, make_client: ClientFactory
) -> None:
    client = make_client(proxy.url, retry_count=0)
    proxy.set_mode("deep-model")
    with pytest.raises(MalformedResponseError, match="nested deeper"):
        client.get(PROMPT_ID)
    assert client.cache_stats()["total_entries"] == 0


def test_a_gzip_bomb_stops_at_the_bound_in_decoded_bytes(
    proxy: FaultProxy, make_client: ClientFactory
) -> None:
    # 30 MB once inflated, about 30 KB on the wire: the bound counts what it inflates to.
    client = make_client(proxy.url, retry_count=0)
    proxy.set_mode("bomb")
    with pytest.raises(ResponseTooLargeError, match=str(MAX_RESPONSE_BYTES)):
        client.get(PROMPT_ID)
    assert client.cache_stats()["total_entries"] == 0


def test_the_bound_is_a_keyword_option(proxy: FaultProxy, make_client: ClientFactory) -> None:
    # The legacy prompt's answer is a few hundred bytes: within the default, past 100.
    assert make_client(proxy.url).get(PROMPT_ID).name == "welcome"
    with pytest.raises(ResponseTooLargeError, match="100 bytes"):
        make_client(proxy.url, retry_count=0, max_response_bytes=100).get(PROMPT_ID)


def test_an_endless_answer_stops_at_the_bound_long_before_the_timeout(
    proxy: FaultProxy, make_client: ClientFactory
) -> None:
    # A generous timeout: only the size bound can end this call early.
    timeout = 60.0
    client = make_client(proxy.url, retry_count=0, timeout=timeout)
    proxy.set_mode("endless")
    started = time.monotonic()
    with pytest.raises(ResponseTooLargeError):
        client.get(PROMPT_ID)
    assert time.monotonic() - started < timeout / 2
    # The client stopped reading at the bound; what the proxy managed to push into socket
    # buffers beyond it is small next to it.
    assert proxy.sent_bytes() < 4 * MAX_RESPONSE_BYTES
