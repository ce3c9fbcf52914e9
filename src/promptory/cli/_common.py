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
from types import ModuleType
from typing import TYPE_CHECKING

from .._controls import escape_controls

if TYPE_CHECKING:
    from ..client import PromptClient

__all__ = ["BASE_URL_ENV", "KEY_ENV", "MissingExtra", "Subcommands", "client_from_env", "fail"]

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
    return PromptClient(base_url, api_key, retry_count=1, timeout=getattr(args, "timeout", 10.0))
