"""promptory: fetch, cache and render LLM prompts kept in git, from a Promptory server."""

from ._version import __version__
from .async_client import AsyncPromptClient
from .client import PromptClient
from .exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ForbiddenError,
    InvalidArgumentError,
    InvalidInputError,
    MalformedResponseError,
    NotFoundError,
    PromptoryError,
    RateLimitError,
    RenderError,
    ResponseTooLargeError,
    ServerError,
    UndefinedVariableError,
)
from .prompt import Prompt

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AsyncPromptClient",
    "AuthenticationError",
    "BadRequestError",
    "ForbiddenError",
    "InvalidArgumentError",
    "InvalidInputError",
    "MalformedResponseError",
    "NotFoundError",
    "Prompt",
    "PromptClient",
    "PromptoryError",
    "RateLimitError",
    "RenderError",
    "ResponseTooLargeError",
    "ServerError",
    "UndefinedVariableError",
    "__version__",
]
