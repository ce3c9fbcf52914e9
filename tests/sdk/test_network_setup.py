"""How the clients reach the network: both follow ``HTTP(S)_PROXY``/``NO_PROXY`` as httpx
does, take `verify` as current httpx does (no DeprecationWarning for a CA path), build one
TLS context per client, and do no network I/O in their constructors (issue 9, item 12;
issue 10).
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from faults.proxy import FaultProxy
from promptory import AsyncPromptClient, MalformedResponseError, PromptClient

from .conftest import API_KEY, GREETING_ID, SdkFactory
from .legacy_server import LegacyServer

CLIENTS = [PromptClient, AsyncPromptClient]


@pytest.fixture
def garbling_proxy() -> Iterator[FaultProxy]:
    """A proxy that answers every request itself with a 200 that is not JSON: a request
    that went through it ends in `MalformedResponseError`."""
    with FaultProxy(("127.0.0.1", 9)) as proxy:
        proxy.set_mode("garble")
        yield proxy


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_both_clients_follow_http_proxy_from_the_environment(
    sdk: SdkFactory, refused_url: str, garbling_proxy: FaultProxy, clean_proxy_env: Any
) -> None:
    clean_proxy_env.setenv("HTTP_PROXY", garbling_proxy.url)
    client = sdk(refused_url, retry_count=0)
    # Straight to `refused_url` this would be a connection error; through the proxy it is
    # the proxy's garbled answer.
    with pytest.raises(MalformedResponseError):
        client.get(GREETING_ID)
    assert garbling_proxy.attempts("garble") == 1


def test_both_clients_honour_no_proxy(
    sdk: SdkFactory, legacy: LegacyServer, garbling_proxy: FaultProxy, clean_proxy_env: Any
) -> None:
    clean_proxy_env.setenv("HTTP_PROXY", garbling_proxy.url)
    clean_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    assert sdk(legacy.url).get(GREETING_ID).id == GREETING_ID
    assert garbling_proxy.attempts() == 0


@pytest.mark.parametrize("cls", CLIENTS)
def test_verify_takes_a_ca_bundle_path_without_a_deprecation_warning(
    cls: Any, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = cls("https://127.0.0.1:9", API_KEY, verify=str(bundle))
    assert isinstance(client._ssl_context, ssl.SSLContext)


@pytest.mark.parametrize("cls", CLIENTS)
def test_a_client_builds_one_tls_context(cls: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[ssl.SSLContext] = []
    original = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = original(*args, **kwargs)
        built.append(context)
        return context

    monkeypatch.setattr(ssl, "create_default_context", counting)
    cls("https://127.0.0.1:9", API_KEY)
    assert len(built) == 1


def test_neither_constructor_does_network_io(legacy: LegacyServer) -> None:
    # prefetch= runs on entering the client's context, in both clients.
    PromptClient(legacy.url, API_KEY, prefetch=[GREETING_ID]).close()
    AsyncPromptClient(legacy.url, API_KEY, prefetch=[GREETING_ID])
    assert legacy.count() == 0
