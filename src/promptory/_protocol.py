"""The wire protocol's constants, shared by the SDK and the server so both agree by
construction: API key prefixes, environments and their promotion order, error codes by
status, and the error envelope.

The routes are listed in the README ("The API"); the envelopes of the existing Promptory
server that the SDK also reads are listed in `read_error_envelope`. This module does no
I/O and imports nothing of the SDK or the server.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "API_KEY_PREFIXES",
    "ENVIRONMENTS",
    "ERROR_CODES",
    "LIVE_KEY_PREFIX",
    "PROMOTION_ORDER",
    "TEST_KEY_PREFIX",
    "error_envelope",
    "read_error_envelope",
]

#: What a production API key starts with.
LIVE_KEY_PREFIX = "pm_live_"
#: What any other API key starts with.
TEST_KEY_PREFIX = "pm_test_"
#: What every API key starts with (both prefixes have the same length).
API_KEY_PREFIXES: tuple[str, ...] = (LIVE_KEY_PREFIX, TEST_KEY_PREFIX)

#: The environments a prompt can live in, least promoted first.
ENVIRONMENTS: tuple[str, ...] = ("development", "staging", "production")

#: Which variant a by-name lookup without an environment returns: the first that exists.
PROMOTION_ORDER: tuple[str, ...] = tuple(reversed(ENVIRONMENTS))

#: Every error code the server sends, by HTTP status.
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: (
        "RENDER_ERROR",
        "INVALID_BODY",
        "INVALID_ENVIRONMENT",
        "INVALID_QUERY",
        "DIFF_TOO_LARGE",
        "REF_READS_DISABLED",
    ),
    401: ("UNAUTHORIZED",),
    403: ("FORBIDDEN",),
    404: ("PROMPT_NOT_FOUND", "APP_NOT_FOUND", "REF_NOT_FOUND", "NOT_FOUND"),
    405: ("METHOD_NOT_ALLOWED",),
    409: ("NOT_FOLLOWING",),
    413: ("PAYLOAD_TOO_LARGE",),
    429: ("RATE_LIMITED", "TOO_MANY_WATCHERS"),
    431: ("HEADERS_TOO_LARGE",),
    500: ("INTERNAL_ERROR",),
    503: ("SERVER_BUSY",),
}


def error_envelope(code: str, message: str) -> dict[str, Any]:
    """The one envelope our server answers every error with."""
    return {"error": {"code": code, "message": message}}


def read_error_envelope(data: Any) -> tuple[str | None, str | None]:
    """The error code and message from a decoded error answer, in any envelope a server
    sends: ``{"error": {...}}`` (ours, and the existing server's 401 and 429),
    ``{"detail": {"error": {...}}}`` (the existing server's 400, 403, 404) or
    ``{"detail": "text"}`` (unknown routes). (None, None) when it is none of these."""
    if not isinstance(data, dict):
        return None, None
    detail = data.get("detail")
    error = data.get("error")
    if error is None and isinstance(detail, dict):
        error = detail.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("message")
        return (
            code if isinstance(code, str) else None,
            message if isinstance(message, str) else None,
        )
    if isinstance(detail, str):
        return None, detail
    return None, None
