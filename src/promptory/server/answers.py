"""How the API's endpoints answer: responses from ready-made bytes, and the one error.

The rule, as in Starlette (``HTTPException`` and its handler): a step that refuses a request
(authentication, rate limit, query, body, ref, scope, lookup) raises `ApiError`; the
endpoint wrapper, `Endpoint`, is the one place that turns it into the error envelope of
`promptory._protocol.error_envelope`. Endpoints return only what they answer when all went
well.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._protocol import error_envelope
from .records import dump_json

__all__ = [
    "JSON",
    "ApiError",
    "Endpoint",
    "Prebuilt",
    "echo",
    "error_response",
    "json_response",
    "unknown_id",
]

#: The content type of every JSON answer.
JSON = b"application/json"
_MAX_ECHO = 200  # characters of a client's input repeated in an error message


def echo(value: str) -> str:
    """A client's input, shortened, for an error message."""
    return value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "..."


class Prebuilt(Response):
    """A response from ready-made bytes and raw headers (no encoding, no header parsing)."""

    def __init__(self, status_code: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = status_code
        self.body = body
        self.raw_headers = headers
        self.background = None


def json_response(data: Any, status: int = 200) -> Response:
    """`data` as a JSON answer."""
    body = dump_json(data)
    return Prebuilt(
        status,
        body,
        [(b"content-type", JSON), (b"content-length", str(len(body)).encode("ascii"))],
    )


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The error envelope as an answer, with `headers` (such as ``Retry-After``) added."""
    body = dump_json(error_envelope(code, message))
    raw = [(b"content-type", JSON), (b"content-length", str(len(body)).encode("ascii"))]
    if headers:
        raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    return Prebuilt(status, body, raw)


class ApiError(Exception):
    """A refused request: raised by any step, answered by `Endpoint` as the error envelope.

    Args:
        status: the HTTP status.
        code: the error code (one of `promptory._protocol.ERROR_CODES` for `status`).
        message: what was wrong and what to do.
        headers: headers the answer carries (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def response(self) -> Response:
        """The error envelope answering this error."""
        return error_response(self.status, self.code, self.message, self.headers)


def unknown_id(prompt_id: str) -> ApiError:
    """The 404 of an id that names no prompt the key may read: the same whether the prompt
    is absent or outside the key's scope, so a key never learns what exists outside it."""
    return ApiError(404, "PROMPT_NOT_FOUND", f"no prompt with id {echo(prompt_id)!r}")


class Endpoint:
    """A route endpoint that is a plain ASGI app: Starlette passes scope, receive, send
    straight through, without building a `Request` or a handler wrapper (an instance, not
    a function, so that Starlette does not wrap it as a request handler).

    The handler returns its answer or raises `ApiError`, answered here. `count`, when
    given, is told the route and status of every answer.
    """

    __slots__ = ("count", "handler", "route")

    def __init__(
        self,
        handler: Callable[[Scope, Receive], Awaitable[Response]],
        route: str = "",
        count: Callable[[str, int], None] | None = None,
    ) -> None:
        self.handler = handler
        self.route = route
        self.count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.handler(scope, receive)
        except ApiError as exc:
            response = exc.response()
        if self.count is not None:
            self.count(self.route, response.status_code)
        await response(scope, receive, send)
