"""The ``promptory`` command.

Subcommands live in modules named for what they serve: `server` (serve, keys), `remote`
(get, render, list, pull — through the SDK), `history` (log, diff), `lint`, `demo`. Each
is a `cmd_<name>(args)` returning the exit status: 0 success, 1 failure, 2 usage or a
missing extra. Server modules are imported inside the commands that need them, so the SDK
alone can run ``--help`` and the client commands; a server command without the extra says
to install ``promptory[server]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from .demo import add_demo
from .history import add_history_commands
from .lint import add_lint
from .mcp import add_mcp
from .remote import add_remote_commands
from .server import add_keys, add_serve

__all__ = ["SIGPIPE_STATUS", "build_parser", "main"]

#: The status of a command whose reader closed the pipe (``promptory get ... | head``): what
#: the shell reports for a Unix tool ended by SIGPIPE (128 + 13), said without a traceback.
SIGPIPE_STATUS = 141


def build_parser() -> argparse.ArgumentParser:
    """The ``promptory`` argument parser, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="promptory",
        description="Git-native LLM prompt management: serve prompts from git, fetch, render, "
        "list and lint them.",
    )
    parser.add_argument("--version", action="version", version=f"promptory {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    commands.required = True
    add_demo(commands)
    add_serve(commands)
    add_keys(commands)
    add_remote_commands(commands)
    add_history_commands(commands)
    add_lint(commands)
    add_mcp(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``promptory`` command; returns its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check = getattr(args, "check", None)
    if check is not None:
        check(parser, args)
    logging.basicConfig(
        level=logging.WARNING
        if args.command in ("demo", "get", "render", "list", "pull", "lint", "log", "diff", "mcp")
        else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        status = int(args.handler(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit past our handler
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return SIGPIPE_STATUS


def _silence_stdout() -> None:
    """Point stdout at the null device, as Python's documentation advises for SIGPIPE: the
    interpreter's last flush at exit would otherwise hit the closed pipe again and print a
    second error."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file descriptor (a captured stream): nothing flushes it at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)
