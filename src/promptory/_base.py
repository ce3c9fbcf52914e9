"""`ClientBase`: what the sync and async clients share beyond the core — construction
(options, snapshot, TLS context, prefetch list), the cache methods (plain methods in both),
the headers and the repr. Neither client does network I/O in its constructor."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from typing import Any

from ._core import ClientCore
from ._options import MAX_RESPONSE_BYTES, ClientOptions, mask_key, prefetch_targets
from ._transport import ssl_context
from ._wire import ACCEPT_ENCODING, user_agent
from .exceptions import PromptoryError
from .snapshot import PromptSnapshot

__all__ = ["ClientBase"]


class ClientBase:
    """Options, the decision core and the cache methods of a promptory client."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        cache_ttl: float,
        cache_max_size: int,
        timeout: float,
        retry_count: int,
        *,
        max_stale: float | None,
        fallback: str | os.PathLike[str] | None,
        background_workers: int,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        prefetch: Iterable[Any] = (),
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        options = ClientOptions.build(
            base_url=base_url,
            api_key=api_key,
            cache_ttl=cache_ttl,
            cache_max_size=cache_max_size,
            timeout=timeout,
            retry_count=retry_count,
            max_stale=max_stale,
            background_workers=background_workers,
            max_response_bytes=max_response_bytes,
        )
        snapshot = PromptSnapshot.load(fallback) if fallback is not None else None
        self._core = ClientCore(options, snapshot=snapshot)
        # Bound once: the hot path then pays one attribute lookup, not two and a bound
        # method (benchmarks/client_hot.py).
        self._lookup_id = self._core.lookup_id
        self._lookup_name = self._core.lookup_name
        self._api_key = api_key
        self._closed = False
        # Fetched on entering the client's context (`with` / `async with`); checked now.
        self._prefetch = list(prefetch)
        prefetch_targets(self._prefetch)
        # One TLS context for the client's life, kept across forks (README, "Options").
        self._ssl_context = ssl_context(verify)

    @property
    def base_url(self) -> str:
        """The server's URL, without a trailing slash."""
        return self._core.options.base_url

    def _check_open(self) -> None:
        if self._closed:
            raise PromptoryError(f"the {type(self).__name__} was closed; create a new one")

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key}",
            "User-Agent": user_agent(),
            "Accept": "application/json",
            # Only what `_wire.AnswerBody` decodes, with its size bound.
            "Accept-Encoding": ACCEPT_ENCODING,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self._core.options.shown_url!r}, "
            f"api_key={mask_key(self._api_key)!r})"
        )

    def cache_stats(self) -> dict[str, Any]:
        """Cache statistics: ``total_entries``, ``fresh_entries``, ``stale_entries``,
        ``max_size``, ``ttl``, ``oldest_age_seconds``, then counters: ``hits``,
        ``stale_hits``, ``misses``, ``revalidations``, ``revalidation_failures``,
        ``stale_served_on_error``, ``fallbacks_served``, ``errors``, ``evictions`` and
        ``in_flight`` (requests under way now)."""
        return self._core.stats()

    def cache_invalidate(self, name: str) -> int:
        """Remove the cached entries of a prompt: by name, by id prefix, or by
        ``org``/``org/app``/``org/app/name`` (whole segments). Returns how many."""
        return self._core.invalidate(name)

    def cache_invalidate_all(self) -> int:
        """Empty the cache; return how many entries were removed."""
        return self._core.cache.clear()
