"""``promptory log`` and ``promptory diff``: a prompt's history, from the server's history
routes (``GET /api/v1/prompts/{id}/history`` and ``.../diff``).

Configured like the other client commands (``PROMPTORY_BASE_URL``, ``PROMPTORY_API_KEY``).
A prompt is named ``ORG/APP/NAME`` (``--env`` picks a variant) or by its id.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import quote

from .._protocol import ENVIRONMENTS
from .._wire import error_from_status
from ..exceptions import APIConnectionError, APITimeoutError, MalformedResponseError, NotFoundError
from ._common import KEY_ENV, ConfigError, Subcommands, client_from_env, run_client_command

__all__ = ["add_history_commands", "cmd_diff", "cmd_log"]


def _call(args: argparse.Namespace, route: str, params: dict[str, str]) -> Any:
    """The prompt's id found through the SDK, then the route's JSON answer."""
    import httpx

    with client_from_env(args) as client:
        target: str = args.prompt
        if "/" in target:
            parts = target.split("/")
            if len(parts) != 3 or not all(parts):
                raise ConfigError(f"{target!r}: name a prompt as ORG/APP/NAME, or by its id")
            org, app, name = parts
            prompt_id = client.get_by_name(org, app, name, environment=args.env).id
        elif args.env is not None:
            raise ConfigError("--env applies to ORG/APP/NAME, not to an id")
        else:
            prompt_id = target
        url = f"{client.base_url}/api/v1/prompts/{quote(prompt_id, safe='')}/{route}"
    api_key = os.environ[KEY_ENV]  # client_from_env made sure it is there
    label = f"prompt {args.prompt}"
    try:
        response = httpx.get(
            url,
            params=params,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=args.timeout,
        )
    except httpx.TimeoutException as exc:
        raise APITimeoutError(
            f"{label}: no answer from {client.base_url} within {args.timeout:g} s", prompt=label
        ) from exc
    except httpx.HTTPError as exc:
        raise APIConnectionError(
            f"{label}: could not get an answer from {client.base_url}: {exc}", prompt=label
        ) from exc
    if response.status_code != 200:
        error = error_from_status(
            response.status_code, response.headers, response.content[:65536], label
        )
        if response.status_code == 404 and error.code not in ("PROMPT_NOT_FOUND", "REF_NOT_FOUND"):
            raise NotFoundError(
                f"{label}: this server has no history route; log and diff need a promptory "
                "server that serves /api/v1/prompts/{id}/history",
                status_code=404,
                prompt=label,
            )
        raise error
    try:
        return response.json()
    except ValueError as exc:
        raise MalformedResponseError(f"{label}: the answer is not JSON", prompt=label) from exc


def cmd_log(args: argparse.Namespace) -> int:
    """Print the commits that changed a prompt: sha, date, author, version, message."""

    def run(args: argparse.Namespace) -> int:
        params = {"limit": str(args.limit)}
        if args.ref:
            params["ref"] = args.ref
        data = _call(args, "history", params)
        if args.json:
            print(json.dumps(data, indent=2, ensure_ascii=False))
            return 0
        for revision in data["revisions"]:
            subject = revision["message"].splitlines()[0] if revision["message"] else ""
            version = revision["version"] or "(deleted)"
            print(
                f"{revision['sha'][:12]}  {revision['date']}  {version:<10} "
                f"{revision['author']}  {subject}"
            )
        if data["truncated"]:
            print("(more: --limit up to 200, or --ref an older commit)", file=sys.stderr)
        return 0

    return run_client_command(run, args, args.prompt)


def cmd_diff(args: argparse.Namespace) -> int:
    """Print what changed in a prompt between two refs: fields, front matter, body."""

    def run(args: argparse.Namespace) -> int:
        params = {"from": args.ref1}
        if args.ref2:
            params["to"] = args.ref2
        data = _call(args, "diff", params)
        if args.json:
            print(json.dumps(data, indent=2, ensure_ascii=False))
            return 0
        before, after = data["from"], data["to"]
        print(
            f"# {data['path']}  {before['sha'][:12]} ({before['version'] or 'absent'}) -> "
            f"{after['sha'][:12]} ({after['version'] or 'absent'})"
        )
        for change in data["fields"]:
            print(
                f"# {change['field']}: {json.dumps(change['from'], ensure_ascii=False)} -> "
                f"{json.dumps(change['to'], ensure_ascii=False)}"
            )
        if not (data["front_matter_diff"] or data["body_diff"]):
            print("# no difference")
        sys.stdout.write(data["front_matter_diff"])
        sys.stdout.write(data["body_diff"])
        return 0

    return run_client_command(run, args, args.prompt)


def add_history_commands(commands: Subcommands[argparse.ArgumentParser]) -> None:
    """Register log and diff."""
    log = commands.add_parser(
        "log",
        help="list the commits that changed a prompt",
        description="List the commits that changed a prompt's file, newest first: sha, "
        "date, version, author, message.",
    )
    log.add_argument("prompt", metavar="ORG/APP/NAME|ID")
    log.add_argument("--env", choices=ENVIRONMENTS, help="the environment (default: most promoted)")
    log.add_argument(
        "--limit", type=int, default=20, help="how many commits, at most 200 (default %(default)s)"
    )
    log.add_argument("--ref", help="start from this commit, tag or branch")
    log.add_argument("--json", action="store_true", help="print the server's JSON")
    _common(log)
    log.set_defaults(handler=cmd_log)

    diff = commands.add_parser(
        "diff",
        help="show what changed in a prompt between two refs",
        description="Show what changed in a prompt's file between REF1 and REF2 (default: "
        "the commit served): front matter fields, then unified diffs of the front matter and "
        "the body.",
    )
    diff.add_argument("prompt", metavar="ORG/APP/NAME|ID")
    diff.add_argument("ref1", metavar="REF1", help="the older commit, tag or branch")
    diff.add_argument("ref2", metavar="REF2", nargs="?", help="the newer one (default: served)")
    diff.add_argument("--env", choices=ENVIRONMENTS, help="the environment")
    diff.add_argument("--json", action="store_true", help="print the server's JSON")
    _common(diff)
    diff.set_defaults(handler=cmd_diff)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", help="the server (default $PROMPTORY_BASE_URL)")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per attempt (default %(default)s)"
    )
