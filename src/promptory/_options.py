"""A client's options, checked once at construction: `ClientOptions.build` refuses a bad one
with an `InvalidArgumentError` naming it (see the README, "Client options").

No I/O here, and neither httpx nor asyncio: the same checks serve both clients.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._protocol import API_KEY_PREFIXES, LIVE_KEY_PREFIX, TEST_KEY_PREFIX
from .exceptions import InvalidArgumentError

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "BACKOFF_MAX_DELAY",
    "MAX_RESPONSE_BYTES",
    "PREFETCH_CONCURRENCY",
    "ClientOptions",
    "check_api_key",
    "mask_key",
    "prefetch_targets",
    "redact_url",
]

#: First retry delay, in seconds; each further retry doubles it.
BACKOFF_BASE = 0.1
#: No single retry waits longer than this, in seconds.
BACKOFF_MAX_DELAY = 1.0
#: The waits of one call add up to at most this, in seconds. With the per-attempt `timeout`,
#: a call against a dead or stalled server ends within (retry_count + 1) * timeout + BACKOFF_CAP.
BACKOFF_CAP = 2.0
#: The default bound on one answer, in decoded bytes: far above any real prompt (the largest
#: in the example repository is under 10 KB), far below what would hurt a process.
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
#: `prefetch` fetches at most this many prompts at a time, in both clients.
PREFETCH_CONCURRENCY = 8


@dataclass(frozen=True)
class ClientOptions:
    """A client's checked settings. Build with `ClientOptions.build`, which refuses bad ones."""

    base_url: str
    cache_ttl: float
    cache_max_size: int
    timeout: float
    retry_count: int
    max_stale: float | None
    background_workers: int
    max_response_bytes: int = MAX_RESPONSE_BYTES

    @classmethod
    def build(
        cls,
        *,
        base_url: Any,
        api_key: Any,
        cache_ttl: Any,
        cache_max_size: Any,
        timeout: Any,
        retry_count: Any,
        max_stale: Any = None,
        background_workers: Any = 2,
        max_response_bytes: Any = MAX_RESPONSE_BYTES,
    ) -> ClientOptions:
        """Check every setting; raise `InvalidArgumentError` naming the first bad one."""
        check_api_key(api_key)
        return cls(
            base_url=_check_base_url(base_url),
            cache_ttl=_number("cache_ttl", cache_ttl, minimum=0),
            cache_max_size=_integer("cache_max_size", cache_max_size, minimum=0),
            timeout=_number("timeout", timeout, minimum=0, inclusive=False),
            retry_count=_integer("retry_count", retry_count, minimum=0),
            max_stale=None if max_stale is None else _number("max_stale", max_stale, minimum=0),
            background_workers=_integer("background_workers", background_workers, minimum=1),
            max_response_bytes=_integer("max_response_bytes", max_response_bytes, minimum=1),
        )

    @property
    def give_up_after(self) -> float:
        """The longest one call can take against a dead or stalled server, in seconds."""
        return (self.retry_count + 1) * self.timeout + BACKOFF_CAP

    @property
    def shown_url(self) -> str:
        """`base_url` as reprs and messages show it: credentials in it are masked."""
        return redact_url(self.base_url)


_PREFIXES = f"{LIVE_KEY_PREFIX!r} or {TEST_KEY_PREFIX!r}"


def check_api_key(api_key: Any) -> str:
    """Refuse a key without a known prefix. The message never repeats the key."""
    if not isinstance(api_key, str) or not api_key.startswith(API_KEY_PREFIXES):
        raise InvalidArgumentError(
            f"api_key must be a Promptory API key starting with {_PREFIXES}",
            code="INVALID_API_KEY",
        )
    if len(api_key) <= len(LIVE_KEY_PREFIX) or not all(33 <= ord(c) <= 126 for c in api_key):
        raise InvalidArgumentError(
            f"api_key must be a Promptory API key: the prefix {_PREFIXES} followed "
            "by the key's characters (printable ASCII, no spaces)",
            code="INVALID_API_KEY",
        )
    return api_key


def mask_key(api_key: str) -> str:
    """The key as shown in a repr: its prefix only."""
    return api_key[: len(LIVE_KEY_PREFIX)] + "…"


def _check_base_url(base_url: Any) -> str:
    if not isinstance(base_url, str):
        raise InvalidArgumentError(
            "base_url must be a string such as 'http://localhost:8000', not "
            f"{type(base_url).__name__}",
            code="INVALID_BASE_URL",
        )
    shown = redact_url(base_url)
    bad = next((c for c in base_url if not 0x20 < ord(c) < 0x7F), None)
    if bad is not None:
        # Spaces, controls and non-ASCII: IDNA hosts are written in their xn-- form.
        raise InvalidArgumentError(
            f"base_url must be printable ASCII without spaces (found {bad!r}): {shown!r}",
            code="INVALID_BASE_URL",
        )
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError as exc:
        raise InvalidArgumentError(
            f"base_url is not a valid URL ({exc}): {shown!r}", code="INVALID_BASE_URL"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(
            f"base_url must be an absolute http:// or https:// URL, got {shown!r}",
            code="INVALID_BASE_URL",
        )
    if parts.query or parts.fragment:
        raise InvalidArgumentError(
            f"base_url must not have a query or fragment, got {shown!r}",
            code="INVALID_BASE_URL",
        )
    return base_url.rstrip("/")


def _number(name: str, value: Any, *, minimum: float, inclusive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgumentError(
            f"{name} must be a finite number of seconds, got {value!r}", code="INVALID_OPTION"
        )
    if value < minimum or (not inclusive and value == minimum):
        bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
        raise InvalidArgumentError(f"{name} must be {bound}, got {value!r}", code="INVALID_OPTION")
    return value  # as given: cache_stats() shows the ttl as the caller wrote it


def _integer(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(
            f"{name} must be a whole number, got {value!r}", code="INVALID_OPTION"
        )
    if value < minimum:
        raise InvalidArgumentError(
            f"{name} must be >= {minimum}, got {value!r}", code="INVALID_OPTION"
        )
    return value


def redact_url(url: str) -> str:
    """`url` with the password of its credentials, if any, replaced by ``***``: what a repr,
    a log line or an error message may show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.rpartition("@")[2] if "@" in url else url
    if parts.password is None and parts.username is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = "***" if parts.password is None else f"{parts.username}:***"
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def prefetch_targets(items: Iterable[Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """Read `prefetch` specs: an id, ``"org/app/name"``, or a tuple ``(org, app, name[, env])``.

    Returns ``(label, args)`` pairs: args of `get` (one element) or of `get_by_name`.
    """
    targets: list[tuple[str, tuple[Any, ...]]] = []
    for item in items:
        if isinstance(item, str) and "/" in item:
            parts = item.split("/")
            if len(parts) != 3 or not all(parts):
                raise InvalidArgumentError(
                    f"prefetch entry {item!r}: a qualified name is 'org/app/name'",
                    code="INVALID_ARGUMENT",
                )
            targets.append((item, tuple(parts)))
        elif isinstance(item, str) and item:
            targets.append((item, (item,)))
        elif (
            isinstance(item, tuple)
            and len(item) in (3, 4)
            and all(isinstance(p, (str, type(None))) for p in item)
        ):
            targets.append(("/".join(p for p in item if p), item))
        else:
            raise InvalidArgumentError(
                f"prefetch entry {item!r}: expected an id, 'org/app/name', or "
                "(org, app, name[, environment])",
                code="INVALID_ARGUMENT",
            )
    return targets
