"""What the clients refuse at construction, and what they never show."""

from __future__ import annotations

import logging

import pytest

import promptory
from promptory import AsyncPromptClient, InvalidArgumentError, PromptClient, PromptoryError

SECRET = "pm_live_" + "SeCrEt" * 8
CLIENTS = [PromptClient, AsyncPromptClient]


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.parametrize("key", ["sk_live_abcdef", "pm_prod_abcdef", "", "pm_live_", None, 42])
def test_key_without_a_known_prefix_is_refused_naming_the_prefixes(cls, key) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        cls("http://127.0.0.1:8000", key)
    message = str(caught.value)
    assert "pm_live_" in message and "pm_test_" in message
    if isinstance(key, str) and len(key) > 8:
        assert key not in message


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.parametrize("key", ["pm_live_abc def", "pm_live_ключ", "pm_live_abc\x00"])
def test_key_with_spaces_or_non_ascii_is_refused_without_echoing_it(cls, key: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        cls("http://127.0.0.1:8000", key)
    assert key[8:] not in str(caught.value)


@pytest.mark.parametrize("cls", CLIENTS)
def test_key_never_appears_in_the_repr(cls) -> None:
    client = cls("http://127.0.0.1:8000", SECRET)
    assert "SeCrEt" not in repr(client)
    assert "pm_live_" in repr(client)


def test_key_never_appears_in_errors_or_logs(caplog: pytest.LogCaptureFixture, refused_url) -> None:
    with (
        caplog.at_level(logging.DEBUG),
        PromptClient(refused_url, SECRET, retry_count=1) as client,
        pytest.raises(PromptoryError) as caught,
    ):
        client.get("x")
    assert "SeCrEt" not in str(caught.value)
    assert "SeCrEt" not in repr(caught.value.__cause__)
    assert all("SeCrEt" not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.parametrize(
    "url",
    [
        "localhost:8000",
        "ftp://example.com",
        "/relative",
        "http://",
        "",
        "http://x/?q=1",
        "http://[::1",
        "http://a\x7fb",
        "http://127.0.0.1:99999",
    ],
)
def test_base_url_must_be_absolute_http(cls, url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="base_url"):
        cls(url, SECRET)


@pytest.mark.parametrize("cls", CLIENTS)
def test_trailing_slash_in_base_url_is_fine(cls) -> None:
    client = cls("http://127.0.0.1:8000/", SECRET)
    assert "8000'" in repr(client)


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("cache_ttl", -1),
        ("cache_ttl", float("nan")),
        ("cache_ttl", "300"),
        ("cache_max_size", -1),
        ("cache_max_size", 1.5),
        ("timeout", 0),
        ("timeout", -2.0),
        ("timeout", float("inf")),
        ("retry_count", -1),
        ("retry_count", True),
        ("max_stale", -5),
    ],
)
def test_bad_numbers_are_refused_naming_the_option(cls, option: str, value: object) -> None:
    with pytest.raises(InvalidArgumentError, match=option):
        cls("http://127.0.0.1:8000", SECRET, **{option: value})


def test_invalid_argument_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="pm_live_"):
        PromptClient("http://127.0.0.1:8000", "nope")


@pytest.mark.parametrize("cls", CLIENTS)
def test_the_spec_defaults(cls) -> None:
    stats = cls("http://127.0.0.1:8000", SECRET).cache_stats()
    assert stats["ttl"] == 300
    assert isinstance(stats["ttl"], int)  # shown as given, as in the spec's example
    assert stats["max_size"] == 1000


def test_the_spec_constructor_arguments_are_positional_in_order() -> None:
    client = PromptClient("http://127.0.0.1:8000", SECRET, 60, 10, 2.5, 1)
    assert client.cache_stats()["ttl"] == 60
    assert client.cache_stats()["max_size"] == 10


def test_the_public_names_are_exported() -> None:
    assert set(promptory.__all__) >= {
        "PromptClient",
        "AsyncPromptClient",
        "Prompt",
        "PromptoryError",
        "NotFoundError",
        "AuthenticationError",
        "RateLimitError",
    }
    for name in promptory.__all__:
        assert getattr(promptory, name) is not None
    from promptory.exceptions import RateLimitError

    assert issubclass(RateLimitError, promptory.PromptoryError)


def test_every_exception_is_a_promptory_error() -> None:
    from promptory import exceptions

    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), PromptoryError)


def test_exceptions_pickle_with_their_attributes() -> None:
    import pickle

    from promptory import RateLimitError

    error = RateLimitError("slow down", code="RATE_LIMITED", prompt="a/b/c", retry_after=3.0)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.status_code, copy.code, copy.prompt, copy.retry_after) == (
        429,
        "RATE_LIMITED",
        "a/b/c",
        3.0,
    )
    assert str(copy) == "slow down"


def test_the_package_is_typed() -> None:
    from importlib.resources import files

    assert files("promptory").joinpath("py.typed").is_file()


@pytest.mark.parametrize("cls", CLIENTS)
def test_credentials_in_base_url_never_show_in_a_repr(cls) -> None:
    client = cls("http://user:hunter2pass@127.0.0.1:8000", SECRET)
    assert "hunter2pass" not in repr(client)
    assert "user:***@127.0.0.1:8000" in repr(client)


def test_credentials_in_base_url_never_show_in_an_error(refused_url: str) -> None:
    url = refused_url.replace("http://", "http://user:hunter2pass@")
    with (
        PromptClient(url, SECRET, retry_count=0) as client,
        pytest.raises(PromptoryError) as caught,
    ):
        client.get("some-id")
    assert "hunter2pass" not in str(caught.value)


@pytest.mark.parametrize("cls", CLIENTS)
@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10"])
def test_max_response_bytes_must_be_a_positive_whole_number(cls, value: object) -> None:
    with pytest.raises(InvalidArgumentError, match="max_response_bytes"):
        cls("http://127.0.0.1:8000", SECRET, max_response_bytes=value)
