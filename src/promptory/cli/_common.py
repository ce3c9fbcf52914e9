"""What the ``promptory`` subcommands share: failing cleanly, the server extra, the client.

Rules: a command returns its exit status (0 success, 1 failure, 2 usage or a missing
extra); what it produces goes to stdout, messages to stderr; API keys are never printed
(but by ``keys create``, once).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

from .._controls import escape_controls
from ..exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ForbiddenError,
    InvalidArgumentError,
    MalformedResponseError,
    NotFoundError,
    PromptoryError,
    RateLimitError,
    RenderError,
    ServerError,
    UndefinedVariableError,
)

if TYPE_CHECKING:
    from ..client import PromptClient

__all__ = [
    "BASE_URL_ENV",
    "KEY_ENV",
    "MissingExtra",
    "Subcommands",
    "client_from_env",
    "explain",
    "fail",
    "run_client_command",
]

#: Environment variables the client commands read.
BASE_URL_ENV = "PROMPTORY_BASE_URL"
KEY_ENV = "PROMPTORY_API_KEY"

_SERVER_EXTRA = (
    "this command needs the server extra: in a clone of promptory, pip install '.[server]' "
    "(see the README's Install section)"
)

Subcommands = argparse._SubParsersAction  # the type argparse gives `add_subparsers()`


class MissingExtra(Exception):
    """A module of the ``server`` extra is not installed."""


def import_extra(module: str) -> ModuleType:
    """Import a module of the server extra, or raise `MissingExtra`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(f"{_SERVER_EXTRA} ({exc})") from None


def fail(message: str, status: int = 1) -> int:
    """Say what went wrong on stderr and return `status`.

    Messages may quote repository or server text (a prompt's name, a template error): every
    control character but newline and tab is shown escaped, so none reaches the terminal."""
    print("promptory: " + escape_controls(message, keep="\n\t"), file=sys.stderr)
    return status


class ConfigError(Exception):
    """The client commands are missing their settings."""


def client_from_env(args: argparse.Namespace) -> PromptClient:
    """A `PromptClient` from --base-url/--api-key or $PROMPTORY_BASE_URL/$PROMPTORY_API_KEY."""
    from ..client import PromptClient

    base_url = getattr(args, "base_url", None) or os.environ.get(BASE_URL_ENV)
    api_key = os.environ.get(KEY_ENV)
    if not base_url or not api_key:
        missing = [
            name for name, value in ((BASE_URL_ENV, base_url), (KEY_ENV, api_key)) if not value
        ]
        raise ConfigError(
            f"set {' and '.join(missing)} (the server's URL and an API key), e.g.\n"
            f"  export {BASE_URL_ENV}=http://localhost:8000 {KEY_ENV}=pm_live_..."
        )
    try:
        return PromptClient(
            base_url, api_key, retry_count=1, timeout=getattr(args, "timeout", 10.0)
        )
    except InvalidArgumentError as exc:
        # Which setting is wrong, in the user's words (the SDK names its own arguments).
        setting = KEY_ENV if "api_key" in exc.message else f"--base-url or ${BASE_URL_ENV}"
        raise ConfigError(
            f"{setting}: {exc.message}\n  set it to "
            + (
                "a key that `promptory keys create` printed"
                if setting == KEY_ENV
                else "the server's URL, e.g. http://localhost:8000"
            )
        ) from None


def _detail(error: PromptoryError) -> str:
    """The error's message without the SDK's own name for the prompt (``prompt id '...'``,
    ``prompts of myorg``): the command names what the user typed instead."""
    message = error.message
    if error.prompt:
        for label in (error.prompt, f"prompt {error.prompt}"):
            if message.startswith(label + ": "):
                return message[len(label) + 2 :]
    return message


def explain(error: PromptoryError, typed: str, *, listing: bool = False, options: str = "") -> str:
    """What went wrong, named by what the user typed (`typed`: ``ORG/APP/NAME``, an id, a
    scope, then the `options` that chose it: ``--env staging --ref v1``), and on a second
    line what to do about it.

    `listing` is true for ``list`` and ``pull``, whose 403 is about a scope, not a prompt."""
    detail = _detail(error)
    # The org/app a key needs: the scope typed for list and pull, ORG/APP of ORG/APP/NAME.
    scope = typed if listing else typed.rsplit("/", 1)[0] if typed.count("/") == 2 else None
    base_url = os.environ.get(BASE_URL_ENV) or "the server"
    hint: str | None = None
    if isinstance(error, AuthenticationError):
        hint = (
            f"the server at {base_url} does not know the key in ${KEY_ENV}: check it is "
            "whole and not revoked (`promptory keys list` where the server's keys file is), "
            "or make one with `promptory keys create`"
        )
    elif isinstance(error, ForbiddenError):
        if listing:
            detail = detail.replace("may not read this prompt", "may not list these prompts")
        hint = (
            f"the key in ${KEY_ENV} is scoped to another org or app: see its scope with "
            "`promptory keys list`, list what it may read with `promptory list`, or use a "
            f"key made with `promptory keys create --scope {scope or 'ORG/APP'}`"
        )
    elif isinstance(error, NotFoundError):
        if error.code == "REF_NOT_FOUND":
            prompt = "ORG/APP/NAME" if listing else typed
            hint = (
                "a ref is a tag or a commit of the history the server serves: "
                f"`promptory log {prompt}` lists the commits that changed a prompt"
            )
        elif error.code == "PROMPT_NOT_FOUND" and scope:
            hint = (
                f"see the prompts of {scope} with `promptory list {scope}` (one environment "
                "only: `--env`)"
            )
        elif error.code == "PROMPT_NOT_FOUND":
            hint = "see the ids of the prompts the key may read with `promptory list`"
        else:
            hint = (
                f"is {base_url} a promptory server? list, pull, log, diff and --ref need "
                "one (`promptory serve`)"
            )
    elif isinstance(error, RateLimitError):
        wait = f"{error.retry_after:g} s" if error.retry_after is not None else "a moment"
        hint = f"the server limits requests per key: try again in {wait}"
    elif isinstance(error, UndefinedVariableError):
        hint = "give each with -v NAME=VALUE, or all in --vars-file FILE (a JSON object)"
    elif isinstance(error, RenderError):
        hint = "fix the template (`promptory lint` names the file and line) or the variables"
    elif isinstance(error, APITimeoutError):
        hint = f"is the server at {base_url} overloaded? try again, or raise --timeout"
    elif isinstance(error, APIConnectionError):
        hint = (
            f"start the server (`promptory serve ./prompts`), or point ${BASE_URL_ENV} "
            "(or --base-url) at one that runs"
        )
    elif isinstance(error, ServerError):
        hint = "the server failed: its log says why"
    elif isinstance(error, MalformedResponseError):
        hint = f"is {base_url} a promptory server? check ${BASE_URL_ENV}"
    message = f"{typed}{' ' + options if options else ''}: {detail}"
    return f"{message}\n  {hint}" if hint else message


def run_client_command(
    command: Callable[[argparse.Namespace], int],
    args: argparse.Namespace,
    typed: str,
    *,
    listing: bool = False,
) -> int:
    """Run a client command: a `ConfigError` exits 2, an SDK error 1, each said on stderr
    by `explain`, naming `typed` and the ``--env``/``--ref`` the user gave."""
    options = " ".join(
        f"--{name} {value}"
        for name in ("env", "ref")
        if (value := getattr(args, name, None)) is not None
    )
    try:
        return int(command(args))
    except ConfigError as exc:
        return fail(str(exc), 2)
    except PromptoryError as exc:
        return fail(explain(exc, typed, listing=listing, options=options))
