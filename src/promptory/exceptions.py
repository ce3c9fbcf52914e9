"""Every error the SDK raises, in one tree.

```
PromptoryError                      status_code, code, prompt
├── InvalidArgumentError            also a ValueError: a bad option or argument, refused locally
├── APIConnectionError              no HTTP answer: refused, reset, DNS, TLS...
│   └── APITimeoutError             no complete answer within `timeout`
├── NotFoundError                   404
├── AuthenticationError             401
├── ForbiddenError                  403: the key is scoped to another org or app
├── RateLimitError                  429, with retry_after
├── BadRequestError                 any other 4xx
├── ServerError                     5xx
├── MalformedResponseError          an answer that is not a valid prompt (never cached)
│   └── ResponseTooLargeError       an answer past `max_response_bytes` (decoded)
└── RenderError                     a template that fails to render, locally or on the server
    └── UndefinedVariableError      strict rendering found variables that were not given
        └── InvalidInputError       ... or values of the wrong type for their declared inputs
```

Each error says what happened and to which prompt. Errors of the HTTP layer are chained
(`raise ... from exc`) and never escape on their own.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ForbiddenError",
    "InvalidArgumentError",
    "InvalidInputError",
    "MalformedResponseError",
    "NotFoundError",
    "PromptoryError",
    "RateLimitError",
    "RenderError",
    "ResponseTooLargeError",
    "ServerError",
    "UndefinedVariableError",
]


class PromptoryError(Exception):
    """Base class of every error raised by promptory.

    Attributes:
        status_code: the HTTP status of the answer that caused the error, or None when no
            HTTP answer came (connection failures, timeouts, local errors).
        code: the server's machine-readable error code (e.g. ``PROMPT_NOT_FOUND``) when it
            sent one, else a code of our own for local errors, or None.
        prompt: a short description of the prompt the call was about
            (``"id 550e8400-..."``, ``"myorg/myapp/greeting"``), or None.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        prompt: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.prompt = prompt

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only attributes survive pickling (multiprocessing, task queues).
        return (
            _rebuild,
            (type(self), self.message, self.__dict__.copy()),
        )


def _rebuild(cls: type[PromptoryError], message: str, state: dict[str, object]) -> PromptoryError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidArgumentError(PromptoryError, ValueError):
    """An option or argument was refused before any request was made."""


class APIConnectionError(PromptoryError):
    """The server could not be reached or gave no complete answer."""


class APITimeoutError(APIConnectionError):
    """The server did not give a complete answer within the client's `timeout`."""


class NotFoundError(PromptoryError):
    """The prompt (or its app) does not exist on the server: HTTP 404."""


class AuthenticationError(PromptoryError):
    """The API key is missing, unknown or revoked: HTTP 401."""


class ForbiddenError(PromptoryError):
    """The API key is valid but scoped to another org or app: HTTP 403."""


class RateLimitError(PromptoryError):
    """The server refused the request for now: HTTP 429.

    Attributes:
        retry_after: seconds to wait before trying again, from the ``Retry-After`` header
            (seconds or an HTTP date), or None when the server did not say.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        code: str | None = None,
        prompt: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, code=code, prompt=prompt)
        self.retry_after = retry_after


class BadRequestError(PromptoryError):
    """The server refused the request as invalid (a 4xx without a more specific class)."""


class ServerError(PromptoryError):
    """The server failed: HTTP 5xx."""


class MalformedResponseError(PromptoryError):
    """The server's answer could not be understood; it was not cached."""


class ResponseTooLargeError(MalformedResponseError):
    """An answer larger than the client's `max_response_bytes`, counted in decoded bytes:
    reading stopped at the bound."""


class RenderError(PromptoryError):
    """A template failed to render: syntax, a sandbox violation, a limit, a runtime error."""


class UndefinedVariableError(RenderError):
    """A strict render found variables the template needs but that were not given.

    Attributes:
        missing: the names of the missing variables, sorted.
    """

    def __init__(
        self,
        message: str,
        *,
        missing: list[str] | tuple[str, ...] = (),
        status_code: int | None = None,
        code: str | None = "UNDEFINED_VARIABLE",
        prompt: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, code=code, prompt=prompt)
        self.missing = list(missing)


class InvalidInputError(UndefinedVariableError):
    """A strict render found variables whose values do not have their input's declared type
    (and maybe missing ones too: `missing`). One error names every problem.

    Attributes:
        invalid: what is wrong with each badly typed variable, by name.
    """

    def __init__(
        self,
        message: str,
        *,
        missing: list[str] | tuple[str, ...] = (),
        invalid: Mapping[str, str] | None = None,
        status_code: int | None = None,
        code: str | None = "INVALID_INPUT",
        prompt: str | None = None,
    ) -> None:
        super().__init__(
            message, missing=missing, status_code=status_code, code=code, prompt=prompt
        )
        self.invalid = dict(invalid or {})
