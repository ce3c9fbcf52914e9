"""``promptory get | render | list | pull``: daily use of a server, through the SDK.

Configured by ``PROMPTORY_BASE_URL`` and ``PROMPTORY_API_KEY`` (or ``--base-url``). A prompt
is named ``ORG/APP/NAME``, or by its id.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .._controls import escape_controls, escape_json_controls
from .._protocol import ENVIRONMENTS
from ..prompt import Prompt
from ..snapshot import write_snapshot
from ._common import ConfigError, Subcommands, client_from_env, run_client_command

__all__ = ["add_remote_commands", "parse_assignment", "read_variables"]


def _fetch(args: argparse.Namespace) -> tuple[Any, Prompt]:
    client = client_from_env(args)
    target: str = args.prompt
    if "/" in target:
        parts = target.split("/")
        if len(parts) != 3 or not all(parts):
            raise ConfigError(f"{target!r}: name a prompt as ORG/APP/NAME, or by its id")
        org, app, name = parts
        return client, client.get_by_name(org, app, name, environment=args.env, ref=args.ref)
    if args.env is not None:
        raise ConfigError("--env applies to ORG/APP/NAME, not to an id")
    return client, client.get(target, ref=args.ref)


def _json_text(value: Any) -> str:
    """JSON for stdout: readable Unicode, with what a terminal would obey escaped."""
    return escape_json_controls(json.dumps(value, indent=2, ensure_ascii=False))


def _body_text(body: str) -> str:
    """A body for stdout: byte for byte into a pipe or file; on a terminal, every control
    character but newline and tab escaped (a body is repository text)."""
    if sys.stdout.isatty():
        body = escape_controls(body.replace("\r\n", "\n"), keep="\n\t")
    return body if body.endswith("\n") else body + "\n"


def cmd_get(args: argparse.Namespace) -> int:
    """Print a prompt: its metadata and body, or its JSON."""

    def run(args: argparse.Namespace) -> int:
        client, prompt = _fetch(args)
        with client:
            if args.json:
                print(_json_text(prompt.meta))
                return 0
            # Metadata lines are repository text: escaped, wherever they go.
            lines = [f"# {prompt.qualified_name}  v{prompt.version}  [{prompt.environment}]"]
            lines.append(f"# id {prompt.id}  type {prompt.type}  role {prompt.role or '-'}")
            if prompt.model:
                lines.append(f"# model {json.dumps(prompt.model, ensure_ascii=False)}")
            if prompt.tags:
                lines.append(f"# tags {', '.join(prompt.tags)}")
            if prompt.includes:
                lines.append(f"# includes {', '.join(prompt.includes)}")
            if prompt.git_sha:
                lines.append(f"# commit {prompt.git_sha}  {prompt.updated_at or ''}".rstrip())
            for line in lines:
                print(escape_controls(line))
            print()
            sys.stdout.write(_body_text(prompt.body))
        return 0

    return run_client_command(run, args, args.prompt)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``name=value`` from ``-v``: the value as JSON when it reads as JSON (``3``, ``true``,
    ``["a"]``, ``{"k": 1}``), else as the plain string."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"-v {text!r}: write NAME=VALUE")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip(), value


def read_variables(args: argparse.Namespace) -> dict[str, Any]:
    """Variables from ``--vars-file`` (a JSON object), then each ``-v NAME=VALUE``."""
    variables: dict[str, Any] = {}
    if args.vars_file:
        path = Path(args.vars_file)
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--vars-file {path}: not a readable JSON file ({exc})") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"--vars-file {path}: expected a JSON object of variables")
        variables.update(loaded)
    for assignment in args.var or ():
        name, value = parse_assignment(assignment)
        variables[name] = value
    return variables


def cmd_render(args: argparse.Namespace) -> int:
    """Render a prompt with variables; includes are resolved by the server."""

    def run(args: argparse.Namespace) -> int:
        variables = read_variables(args)
        client, prompt = _fetch(args)
        with client:
            if args.strict:
                prompt.render(variables, strict=True)  # names every missing variable
            rendered = client.render(prompt.id, variables, ref=args.ref)
        sys.stdout.write(_body_text(rendered))
        return 0

    return run_client_command(run, args, args.prompt)


def _scope(text: str | None) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    parts = text.strip("/").split("/")
    if len(parts) > 2 or not all(parts):
        raise ConfigError(f"{text!r}: expected ORG or ORG/APP")
    return parts[0], parts[1] if len(parts) == 2 else None


def cmd_list(args: argparse.Namespace) -> int:
    """List the prompts the key may read."""

    def run(args: argparse.Namespace) -> int:
        org, app = _scope(args.scope)
        with client_from_env(args) as client:
            prompts = client.list_prompts(
                org, app, environment=args.env, tag=args.tag, ref=args.ref
            )
        if args.json:
            print(_json_text([p.meta for p in prompts]))
            return 0
        rows = [
            tuple(
                escape_controls(str(cell))
                for cell in (
                    p.qualified_name,
                    p.environment,
                    p.version,
                    p.type,
                    ",".join(p.tags),
                    p.id,
                )
            )
            for p in prompts
        ]
        header = ("PROMPT", "ENVIRONMENT", "VERSION", "TYPE", "TAGS", "ID")
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print(
                "  ".join(
                    str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
        print(f"{len(prompts)} prompt{'s' if len(prompts) != 1 else ''}", file=sys.stderr)
        return 0

    return run_client_command(run, args, _scope_text(args.scope), listing=True)


def cmd_pull(args: argparse.Namespace) -> int:
    """Write a snapshot of prompts to a file, for `fallback=` when the server is out of reach."""

    def run(args: argparse.Namespace) -> int:
        org, app = _scope(args.scope)
        with client_from_env(args) as client:
            prompts = client.list_prompts(
                org, app, environment=args.env, tag=args.tag, ref=args.ref
            )
            source = client.base_url
        count = write_snapshot(args.out, (p.meta for p in prompts), source=source)
        print(f"wrote {count} prompt{'s' if count != 1 else ''} to {args.out}", file=sys.stderr)
        return 0

    return run_client_command(run, args, _scope_text(args.scope), listing=True)


def _scope_text(scope: str | None) -> str:
    """How errors name the scope the user typed for list and pull."""
    return scope.strip("/") if scope else "every org and app"


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", help="the server (default $PROMPTORY_BASE_URL)")
    parser.add_argument("--ref", help="read the prompts as they were at this commit, tag or branch")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per attempt (default %(default)s)"
    )


def add_remote_commands(commands: Subcommands[argparse.ArgumentParser]) -> None:
    """Register get, render, list and pull."""
    get = commands.add_parser(
        "get",
        help="print a prompt",
        description="Print a prompt (ORG/APP/NAME or id): its metadata and body, or --json.",
    )
    get.add_argument("prompt", metavar="ORG/APP/NAME|ID")
    get.add_argument("--env", choices=ENVIRONMENTS, help="the environment (default: most promoted)")
    get.add_argument("--json", action="store_true", help="print the prompt's JSON")
    _common_options(get)
    get.set_defaults(handler=cmd_get)

    render = commands.add_parser(
        "render",
        help="render a prompt with variables",
        description="Render a prompt on the server (includes resolved). Variables come from "
        "--vars-file (a JSON object) and -v NAME=VALUE (VALUE read as JSON when it can be).",
    )
    render.add_argument("prompt", metavar="ORG/APP/NAME|ID")
    render.add_argument("-v", "--var", action="append", metavar="NAME=VALUE", help="a variable")
    render.add_argument("--vars-file", metavar="FILE", help="a JSON object of variables")
    render.add_argument("--env", choices=ENVIRONMENTS, help="the environment")
    render.add_argument(
        "--strict", action="store_true", help="fail naming every variable that is missing"
    )
    _common_options(render)
    render.set_defaults(handler=cmd_render)

    listing = commands.add_parser(
        "list",
        help="list prompts",
        description="List the prompts the key may read, optionally of one org or app.",
    )
    listing.add_argument("scope", nargs="?", metavar="ORG[/APP]")
    listing.add_argument("--env", choices=ENVIRONMENTS, help="only this environment")
    listing.add_argument("--tag", help="only prompts with this tag")
    listing.add_argument("--json", action="store_true", help="print the prompts' JSON")
    _common_options(listing)
    listing.set_defaults(handler=cmd_list)

    pull = commands.add_parser(
        "pull",
        help="write a snapshot of prompts for offline starts",
        description="Write the prompts (of an org or app, an environment, a tag) to a "
        "snapshot file, for PromptClient(..., fallback=FILE).",
    )
    pull.add_argument("scope", nargs="?", metavar="ORG[/APP]")
    pull.add_argument("--env", choices=ENVIRONMENTS, help="only this environment")
    pull.add_argument("--tag", help="only prompts with this tag")
    pull.add_argument("--out", required=True, metavar="FILE", help="the snapshot file to write")
    _common_options(pull)
    pull.set_defaults(handler=cmd_pull)
