"""``promptory serve`` and ``promptory keys create``: the server's commands (server extra)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ._common import MissingExtra, Subcommands, fail, import_extra

__all__ = ["add_keys", "add_serve", "cmd_keys_create", "cmd_serve"]


def _default_keys_file() -> Path:
    return Path("~/.config/promptory/keys.json").expanduser()


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the prompts committed in a git repository."""
    try:
        app_module = import_extra("promptory.server.app")
        keys_module = import_extra("promptory.server.keys")
        store_module = import_extra("promptory.server.store")
        uvicorn = import_extra("uvicorn")
    except MissingExtra as exc:
        return fail(str(exc), 2)

    logging.getLogger("promptory").setLevel(args.log_level.upper())
    keys_file = Path(args.keys_file).expanduser() if args.keys_file else _default_keys_file()
    try:
        keyring = keys_module.KeyRing.from_sources(keys_file=keys_file)
    except keys_module.KeySourceError as exc:
        return fail(str(exc))
    if not len(keyring):
        return fail(
            f"no API keys: none in {keys_file} and none in ${keys_module.KEYS_ENV_VAR}.\n"
            f"Make one with:  promptory keys create --keys-file {keys_file}\n"
            f"or set {keys_module.KEYS_ENV_VAR}=pm_live_... (comma-separated keys)."
        )
    repo = Path(args.path).resolve()
    if keys_file.exists() and keys_file.resolve().is_relative_to(repo):
        logging.getLogger("promptory.server").warning(
            "the keys file %s is inside the prompt repository; keep it outside", keys_file
        )
    settings = app_module.ServerSettings(
        repo=str(repo),
        keyring=keyring,
        ref=args.ref,
        org=args.org,
        app=args.app,
        rate_limit=args.rate_limit,
        poll_interval=args.poll_interval,
        ref_reads=args.ref_reads,
    )
    try:
        app = app_module.create_app(settings)
    except (store_module.StoreError, store_module.RefNotFoundError, ValueError) as exc:
        return fail(str(exc))
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


def add_serve(commands: Subcommands[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the prompts committed in a git repository",
        description="Serve the prompts committed in a git repository. New commits are "
        "served within about a second, without a restart. API keys come from the keys "
        "file and from $PROMPTORY_API_KEYS.",
    )
    serve.add_argument("path", metavar="PATH", help="the git repository of prompts")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    serve.add_argument(
        "--ref", default="HEAD", help="branch, tag or commit to serve (default %(default)s)"
    )
    serve.add_argument(
        "--no-ref-reads",
        dest="ref_reads",
        action="store_false",
        help="refuse ?ref= (400 REF_READS_DISABLED); by default it reads tags and commits "
        "the served ref holds in its history",
    )
    serve.add_argument("--org", help="single-app repository: its org (with --app)")
    serve.add_argument("--app", help="single-app repository: its app (with --org)")
    serve.add_argument(
        "--keys-file", help="keys file (default ~/.config/promptory/keys.json)", default=None
    )
    serve.add_argument(
        "--rate-limit",
        type=_non_negative_int,
        default=6000,
        metavar="N",
        help="requests per minute per API key; 0 turns it off (default %(default)s)",
    )
    serve.add_argument(
        "--poll-interval",
        type=_positive_float,
        default=0.5,
        metavar="S",
        help="seconds between checks for new commits (default %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default %(default)s)",
    )
    serve.set_defaults(handler=cmd_serve, check=_check_serve)


def _check_serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.org is None) != (args.app is None):
        parser.error("--org and --app go together (single-app repository)")


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def cmd_keys_create(args: argparse.Namespace) -> int:
    """Make an API key: print it once on stdout, keep only its hash in the keys file."""
    try:
        keys_module = import_extra("promptory.server.keys")
    except MissingExtra as exc:
        return fail(str(exc), 2)
    keys_file = Path(args.keys_file).expanduser() if args.keys_file else _default_keys_file()
    try:
        key, record = keys_module.add_key(
            keys_file, scope=args.scope, test=args.test, label=args.label
        )
    except ValueError as exc:
        return fail(str(exc), 2)
    except keys_module.KeysFileError as exc:
        return fail(str(exc))
    print(key)
    scope = record.scope or "every org and app"
    print(
        f"key {record.id} ({scope}) added to {keys_file}; it is shown only this once.",
        file=sys.stderr,
    )
    return 0


def add_keys(commands: Subcommands[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="manage API keys", description="Manage API keys.")
    actions = keys.add_subparsers(title="actions", dest="action", metavar="ACTION")
    actions.required = True
    create = actions.add_parser(
        "create",
        help="make a new API key",
        description="Make a new API key. The key is printed once on stdout; the keys file "
        "keeps only its SHA-256 hash (mode 0600).",
    )
    create.add_argument(
        "--keys-file", default=None, help="keys file (default ~/.config/promptory/keys.json)"
    )
    create.add_argument("--scope", help="limit the key to ORG or ORG/APP")
    create.add_argument("--test", action="store_true", help="make a pm_test_ key")
    create.add_argument("--label", help="a note saying what the key is for")
    create.set_defaults(handler=cmd_keys_create)
