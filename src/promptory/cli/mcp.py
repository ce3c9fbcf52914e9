"""``promptory mcp``: serve a Promptory server's prompts to MCP clients over stdio.

Backed by a `PromptClient` (its cache, stale serving and retries), so it works against any
Promptory server. Needs the ``mcp`` extra.
"""

from __future__ import annotations

import argparse
import os

from ._common import BASE_URL_ENV, KEY_ENV, Subcommands, fail

__all__ = ["add_mcp", "cmd_mcp"]


def cmd_mcp(args: argparse.Namespace) -> int:
    """Run the MCP server on stdin/stdout until stdin closes."""
    base_url = args.base_url or os.environ.get(BASE_URL_ENV)
    api_key = args.api_key or os.environ.get(KEY_ENV)
    if not base_url or not api_key:
        return fail(
            f"give --base-url and --api-key (or set {BASE_URL_ENV} and {KEY_ENV})", status=2
        )
    try:
        import anyio

        from ..mcp_prompts import run_stdio
    except ImportError as exc:
        return fail(f"this command needs the mcp extra: install promptory[mcp] ({exc})", 2)
    from ..client import PromptClient

    with PromptClient(base_url, api_key, timeout=args.timeout) as client:
        anyio.run(run_stdio, client)
    return 0


def add_mcp(commands: Subcommands[argparse.ArgumentParser]) -> None:
    """Register ``mcp``."""
    parser = commands.add_parser(
        "mcp",
        help="serve prompts to MCP clients over stdio",
        description="Run an MCP server over stdin/stdout: prompts/list gives the prompts the "
        "key may read, prompts/get renders one into messages.",
    )
    parser.add_argument("--base-url", help=f"the Promptory server (default ${BASE_URL_ENV})")
    parser.add_argument(
        "--api-key",
        help=f"the API key (default ${KEY_ENV}, which other users of the machine cannot see)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per attempt (default %(default)s)"
    )
    parser.set_defaults(handler=cmd_mcp)
