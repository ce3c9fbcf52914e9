"""The wire, both ways, free of I/O: the requests the clients send, and what an answer's
bytes mean (a `Prompt`, a rendered string, a listing, or the `PromptoryError` for an error
status). The routes are the README's "The API"; the error envelopes and codes come
from `_protocol`.

Everything read here is hostile until checked, and bounded:

* an answer is read through `AnswerBody`, which decodes ``gzip``/``deflate`` itself and
  refuses to hold more than `max_response_bytes` decoded bytes (a gzip bomb or an endless
  stream stops at the bound, not at the memory's end);
* JSON nested deeper than `MAX_JSON_DEPTH` is a `MalformedResponseError`, never a bare
  `RecursionError`;
* an error message is cut to `MAX_ERROR_MESSAGE` characters, `Retry-After` to
  `MAX_RETRY_AFTER` seconds.

No httpx and no asyncio here: the clients hand in status, headers (a mapping read with
lower-case names, as `httpx.Headers` is) and bytes.
"""

from __future__ import annotations

import json
import math
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from ._cache import CacheKey
from ._protocol import ENVIRONMENTS, read_error_envelope
from ._version import __version__
from .exceptions import (
    AuthenticationError,
    BadRequestError,
    ForbiddenError,
    InvalidArgumentError,
    MalformedResponseError,
    NotFoundError,
    PromptoryError,
    RateLimitError,
    RenderError,
    ResponseTooLargeError,
    ServerError,
)
from .prompt import Prompt

__all__ = [
    "ACCEPT_ENCODING",
    "MAX_ERROR_MESSAGE",
    "MAX_JSON_DEPTH",
    "MAX_RETRY_AFTER",
    "RETRY_STATUSES",
    "AnswerBody",
    "HttpRequest",
    "check_environment",
    "decode_json",
    "error_from_status",
    "list_request",
    "parse_retry_after",
    "path_segment",
    "prompt_request",
    "read_listing",
    "read_prompt",
    "read_rendered",
    "render_request",
    "user_agent",
]

#: Statuses a request is retried on, beside transport errors and timeouts (README, "When the
#: server is down").
RETRY_STATUSES = frozenset({502, 503, 504})
#: JSON nested deeper than this is refused; real prompts nest a handful of levels.
MAX_JSON_DEPTH = 64
#: The longest server error message an exception repeats, in characters.
MAX_ERROR_MESSAGE = 500
#: The longest `Retry-After` believed, in seconds.
MAX_RETRY_AFTER = 3600.0
#: The encodings `AnswerBody` decodes, and so the only ones the clients accept.
ACCEPT_ENCODING = "gzip, deflate"

_JSON_TYPE = {"Content-Type": "application/json"}
_ENVIRONMENT_SET = frozenset(ENVIRONMENTS)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An HTTP request to send, relative to the base URL (path already percent-encoded)."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    content: bytes | None = None


def user_agent() -> str:
    """The User-Agent every request carries."""
    return f"promptory-python/{__version__}"


# --- requests ------------------------------------------------------------------------------


def check_environment(
    environment: Any, *, any_allowed: str = " (or None for the most promoted)"
) -> None:
    """Refuse an environment that is not one of `ENVIRONMENTS` (None passes)."""
    if environment is not None and environment not in _ENVIRONMENT_SET:
        raise InvalidArgumentError(
            f"environment must be one of {', '.join(ENVIRONMENTS)}{any_allowed}, "
            f"got {environment!r}",
            code="INVALID_ENVIRONMENT",
        )


def path_segment(value: Any, what: str) -> str:
    """`value` percent-encoded as exactly one URL path segment: `/` is encoded and a `.` or
    `..` segment is spelled `%2E`, so no id can reach another route."""
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(
            f"{what} must be a non-empty string, got {value!r}", code="INVALID_ARGUMENT"
        )
    segment = quote(value, safe="")
    if segment in (".", ".."):
        segment = segment.replace(".", "%2E")
    return segment


def check_ref(ref: Any) -> str:
    """Refuse a ref that cannot be a commit sha or a tag name."""
    if not isinstance(ref, str) or not ref or any(c.isspace() for c in ref):
        raise InvalidArgumentError(
            f"ref must be a commit sha or a tag name, got {ref!r}", code="INVALID_ARGUMENT"
        )
    return ref


def prompt_request(key: CacheKey, etag: str | None) -> HttpRequest:
    """The GET for `key`, conditional on `etag` when one is known (RFC 9110 §13.1.2; the
    ETag goes back byte for byte: the existing server compares by exact string equality)."""
    params: dict[str, str] = {}
    if key[0] == "id":
        path = f"/api/v1/prompts/{path_segment(key[1], 'prompt_id')}"
    else:
        _, org, app, name, environment = key[:5]
        path = (
            f"/api/v1/prompts/by-name/{path_segment(org, 'org')}/"
            f"{path_segment(app, 'app')}/{path_segment(name, 'name')}"
        )
        if environment is not None:
            params["environment"] = environment
    ref = key[-1]
    if ref is not None:
        params["ref"] = check_ref(ref)
    headers = {"If-None-Match": etag} if etag else {}
    return HttpRequest("GET", path, params, headers)


def render_request(
    prompt_id: str, variables: Mapping[str, Any] | None, ref: str | None, label: str
) -> HttpRequest:
    """The POST that renders `prompt_id` on the server, includes resolved there."""
    try:
        content = json.dumps({"variables": dict(variables or {})}).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgumentError(
            f"{label}: variables must be JSON-serializable to render on the server: {exc}",
            code="INVALID_ARGUMENT",
            prompt=label,
        ) from exc
    params = {"ref": check_ref(ref)} if ref is not None else {}
    path = f"/api/v1/prompts/{path_segment(prompt_id, 'prompt_id')}/render"
    return HttpRequest("POST", path, params, _JSON_TYPE, content)


def list_request(
    org: str | None, app: str | None, environment: str | None, tag: str | None, ref: str | None
) -> HttpRequest:
    """The GET that lists the prompts a key may read, filtered as given."""
    check_environment(environment, any_allowed="")
    if app is not None and org is None:
        raise InvalidArgumentError("listing an app needs its org too", code="INVALID_ARGUMENT")
    filters = {"org": org, "app": app, "environment": environment, "tag": tag}
    params = {name: value for name, value in filters.items() if value is not None}
    if ref is not None:
        params["ref"] = check_ref(ref)
    return HttpRequest("GET", "/api/v1/prompts", params, {})


# --- reading an answer's bytes -------------------------------------------------------------


class AnswerBody:
    """An answer's body, decoded as it arrives and bounded in decoded bytes.

    Feed it the raw chunks off the socket; it decodes ``gzip`` and ``deflate`` itself with
    `zlib`'s ``max_length``, so a small compressed chunk can never inflate past the bound in
    memory. Raises `ResponseTooLargeError` the moment the bound is passed (or at once, when
    ``Content-Length`` announces more) and `MalformedResponseError` for an encoding it does
    not know or data that does not decode.
    """

    __slots__ = ("_chunks", "_decoder", "_label", "_limit", "_raw_deflate", "size")

    def __init__(self, headers: Mapping[str, str], limit: int, label: str) -> None:
        self._limit = limit
        self._label = label
        self._chunks: list[bytes] = []
        self.size = 0
        self._raw_deflate = False
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("", "identity"):
            self._decoder: Any = None
        elif encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS)
            self._raw_deflate = True  # may turn out to be raw deflate: see `_inflate`
        else:
            raise MalformedResponseError(
                f"{label}: the answer is encoded as {encoding[:40]!r}; only gzip and deflate "
                "are accepted",
                code="MALFORMED_RESPONSE",
                prompt=label,
            )
        length = headers.get("content-length")
        announced = int(length) if length is not None and length.strip().isdigit() else None
        if self._decoder is None and announced is not None and announced > limit:
            raise self._too_large(announced)

    def feed(self, chunk: bytes) -> None:
        """Add raw bytes read off the socket."""
        if not chunk:
            return
        if self._decoder is None:
            self._keep(chunk)
        else:
            self._inflate(chunk)

    def finish(self) -> bytes:
        """The whole decoded body, once the answer has ended."""
        if self._decoder is not None:
            try:
                self._keep(self._decoder.flush())
            except zlib.error as exc:
                raise self._undecodable(exc) from None
        return b"".join(self._chunks)

    def _inflate(self, chunk: bytes) -> None:
        decoder = self._decoder
        data = chunk
        while data:
            try:
                out = decoder.decompress(data, self._limit - self.size + 1)
            except zlib.error as exc:
                if self._raw_deflate and not self._chunks and not self.size:
                    # "deflate" servers sometimes send raw deflate without the zlib header.
                    self._raw_deflate = False
                    self._decoder = decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise self._undecodable(exc) from None
            self._raw_deflate = False
            self._keep(out)
            data = decoder.unconsumed_tail
            if not out and data:  # pragma: no cover - zlib always progresses with room left
                raise self._undecodable(zlib.error("no progress"))

    def _keep(self, data: bytes) -> None:
        if data:
            self.size += len(data)
            if self.size > self._limit:
                raise self._too_large(None)
            self._chunks.append(data)

    def _too_large(self, announced: int | None) -> ResponseTooLargeError:
        what = f"announces {announced} bytes" if announced is not None else "goes on past"
        return ResponseTooLargeError(
            f"{self._label}: the answer {what} the limit of {self._limit} bytes "
            "(max_response_bytes); no real prompt is that large",
            code="RESPONSE_TOO_LARGE",
            prompt=self._label,
        )

    def _undecodable(self, exc: Exception) -> MalformedResponseError:
        return MalformedResponseError(
            f"{self._label}: the answer's compressed body does not decode: {exc}",
            code="MALFORMED_RESPONSE",
            prompt=self._label,
        )


def decode_json(content: bytes) -> Any:
    """`content` as JSON, nested at most `MAX_JSON_DEPTH` deep.

    Raises:
        ValueError: not JSON, or nested too deep (a deep document would otherwise raise
            `RecursionError` here or wherever it is walked next).
    """
    try:
        data = json.loads(content)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    # Iterative, so that checking the depth cannot itself recurse too deep.
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        stack.extend((child, depth + 1) for child in children)
    return data


def _malformed(label: str, problem: str, status: int) -> MalformedResponseError:
    return MalformedResponseError(
        f"{label}: malformed answer from the server: {problem}",
        status_code=status,
        code="MALFORMED_RESPONSE",
        prompt=label,
    )


def read_prompt(content: bytes, key: CacheKey, label: str) -> Prompt:
    """The prompt in a 200 answer to the request for `key`.

    Raises:
        MalformedResponseError: not a valid prompt, or not the prompt asked for.
    """
    try:
        data = decode_json(content)
    except ValueError as exc:
        raise _malformed(label, f"not JSON ({exc})", 200) from None
    try:
        prompt = Prompt.from_api(data)
    except MalformedResponseError as exc:
        raise MalformedResponseError(
            f"{label}: {exc.message}", status_code=200, code=exc.code, prompt=label
        ) from None
    # The answer must be the prompt that was asked for: a mixed-up answer must not be cached
    # under this key.
    if key[0] == "id":
        mismatch = not same_id(prompt.id, key[1])
    else:
        _, org, app, name, environment = key[:5]
        mismatch = (
            prompt.name != name
            or (prompt.org not in ("", org))
            or (prompt.app not in ("", app))
            or (environment is not None and prompt.environment not in ("", environment))
        )
    if mismatch:
        raise MalformedResponseError(
            f"{label}: the server answered with another prompt "
            f"({prompt.qualified_name}, id {prompt.id!r}, environment {prompt.environment!r})",
            status_code=200,
            code="MALFORMED_RESPONSE",
            prompt=label,
        )
    return prompt


def read_rendered(content: bytes, label: str) -> str:
    """The rendered text in a 200 answer of the render endpoint."""
    try:
        data = decode_json(content)
    except ValueError:
        data = None
    rendered = data.get("rendered_body") if isinstance(data, dict) else None
    if not isinstance(rendered, str):
        raise _malformed(label, "expected a JSON object with a string 'rendered_body'", 200)
    return rendered


def read_listing(content: bytes, label: str) -> list[Prompt]:
    """The prompts in a 200 answer of the listing endpoint."""
    try:
        data = decode_json(content)
        items = data["prompts"]
        if not isinstance(items, list):
            raise TypeError("'prompts' is not a list")
        return [Prompt.from_api(item) for item in items]
    except (ValueError, KeyError, TypeError, MalformedResponseError) as exc:
        raise _malformed(label, f"listing: {exc}", 200) from None


def same_id(answered: str, asked: str) -> bool:
    """Ids are equal as written, or as UUIDs (``550E8400-...``, ``{...}`` and the hex form
    name the same prompt; the server answers with the canonical spelling)."""
    if answered == asked:
        return True
    try:
        return uuid.UUID(answered) == uuid.UUID(asked)
    except ValueError:
        return False


# --- error answers -------------------------------------------------------------------------

_REASONS = {
    400: "bad request",
    401: "the API key was refused",
    403: "the API key may not read this prompt",
    404: "not found",
    429: "rate limited",
}


def _clip(text: str) -> str:
    text = text.strip()
    if len(text) > MAX_ERROR_MESSAGE:
        return text[:MAX_ERROR_MESSAGE] + f"... ({len(text) - MAX_ERROR_MESSAGE} more characters)"
    return text


def read_error(content: bytes) -> tuple[str | None, str | None]:
    """The server's error code and message from an error answer's body (any envelope
    `_protocol.read_error_envelope` knows), or its text when it is not JSON; the message
    cut to `MAX_ERROR_MESSAGE` characters."""
    try:
        data = decode_json(content)
    except ValueError:
        text = content[: MAX_ERROR_MESSAGE * 4].decode("utf-8", "replace")
        return None, _clip(text) or None
    code, message = read_error_envelope(data)
    if code is not None and (len(code) > 64 or not code.isprintable()):
        code = None  # a code is a short machine-readable word; anything else is noise
    return code, (_clip(message) or None) if message is not None else None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` in seconds, from delta-seconds or an HTTP date (RFC 9110 §10.2.3),
    capped at `MAX_RETRY_AFTER`; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            return None
        current = time.time() if now is None else now
        seconds = when.timestamp() - current
        return min(MAX_RETRY_AFTER, max(0.0, seconds))
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(MAX_RETRY_AFTER, seconds)


def error_from_status(
    status: int, headers: Mapping[str, str], content: bytes, label: str
) -> PromptoryError:
    """The exception for an HTTP error answer: one table for both clients."""
    code, message = read_error(content)
    reason = _REASONS.get(status) or ("server error" if status >= 500 else "unexpected status")
    text = f"{label}: {reason} (HTTP {status}{' ' + code if code else ''})"
    if message:
        text += f": {message}"
    kwargs: dict[str, Any] = {"status_code": status, "code": code, "prompt": label}
    if status == 401:
        return AuthenticationError(text, **kwargs)
    if status == 403:
        return ForbiddenError(text, **kwargs)
    if status == 404:
        return NotFoundError(text, **kwargs)
    if status == 429:
        return RateLimitError(
            text, retry_after=parse_retry_after(headers.get("retry-after")), **kwargs
        )
    if status == 400 and code == "RENDER_ERROR":
        return RenderError(text, **kwargs)
    if 400 <= status < 500:
        return BadRequestError(text, **kwargs)
    if status >= 500:
        return ServerError(text, **kwargs)
    return MalformedResponseError(text, **kwargs)
