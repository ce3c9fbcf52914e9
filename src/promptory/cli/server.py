"""``promptory serve`` and ``promptory keys create|list|revoke|rotate``: the server's commands
(server extra)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ._common import MissingExtra, Subcommands, fail, import_extra

__all__ = [
    "add_keys",
    "add_serve",
    "cmd_keys_create",
    "cmd_keys_list",
    "cmd_keys_revoke",
    "cmd_keys_rotate",
    "cmd_serve",
]


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
    except keys_module.KeysFileError as exc:
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
            keys_file, scope=args.scope, test=args.test, label=args.label, admin=args.admin
        )
    except ValueError as exc:
        return fail(str(exc), 2)
    except keys_module.KeysFileError as exc:
        return fail(str(exc))
    print(key)
    scope = record.scope or "every org and app"
    admin = ", admin" if record.admin else ""
    print(
        f"key {record.id} ({scope}{admin}) added to {keys_file}; it is shown only this once.",
        file=sys.stderr,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    """List the keys of the keys file: fingerprint, kind, scope, created, admin, label."""
    try:
        keys_module = import_extra("promptory.server.keys")
    except MissingExtra as exc:
        return fail(str(exc), 2)
    keys_file = Path(args.keys_file).expanduser() if args.keys_file else _default_keys_file()
    try:
        records = keys_module.load_keys_file(keys_file)
    except keys_module.KeysFileError as exc:
        return fail(str(exc))
    if args.json:
        rows = [{k: v for k, v in r.to_json().items() if k != "sha256"} for r in records]
        print(json.dumps(rows, indent=2))
        return 0
    table = [("ID", "KIND", "SCOPE", "CREATED", "ADMIN", "LABEL")]
    for r in records:
        kind = {"pm_live_": "live", "pm_test_": "test"}.get(r.prefix or "", "?")
        table.append(
            (
                r.id,
                kind,
                r.scope or "*",
                r.created_at or "-",
                "yes" if r.admin else "no",
                r.label or "",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(records)} key{'s' if len(records) != 1 else ''} in {keys_file}", file=sys.stderr)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """Remove a key from the keys file; servers refuse it within their check interval."""
    try:
        keys_module = import_extra("promptory.server.keys")
    except MissingExtra as exc:
        return fail(str(exc), 2)
    keys_file = Path(args.keys_file).expanduser() if args.keys_file else _default_keys_file()
    try:
        record = keys_module.revoke_key(keys_file, args.key_id)
    except keys_module.KeysFileError as exc:
        return fail(str(exc))
    print(f"key {record.id} ({record.scope or 'every org and app'}) revoked", file=sys.stderr)
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Replace a key by a new one with the same scope; print the new key once."""
    try:
        keys_module = import_extra("promptory.server.keys")
    except MissingExtra as exc:
        return fail(str(exc), 2)
    keys_file = Path(args.keys_file).expanduser() if args.keys_file else _default_keys_file()
    try:
        key, new, old = keys_module.rotate_key(keys_file, args.key_id)
    except keys_module.KeysFileError as exc:
        return fail(str(exc))
    print(key)
    print(
        f"key {old.id} revoked and replaced by {new.id} ({new.scope or 'every org and app'}); "
        "the new key is shown only this once.",
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
    create.add_argument(
        "--admin",
        action="store_true",
        help="the key may also list, create and revoke keys within its scope (web UI)",
    )
    create.set_defaults(handler=cmd_keys_create)

    listing = actions.add_parser(
        "list",
        help="list the keys (never the secrets)",
        description="List the keys of the keys file: id (fingerprint: the first 12 hex "
        "digits of the key's SHA-256), kind (live or test), scope, when made, admin, label.",
    )
    listing.add_argument("--keys-file", default=None, help=_KEYS_FILE_HELP)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=cmd_keys_list)

    revoke = actions.add_parser(
        "revoke",
        help="revoke a key",
        description="Remove a key from the keys file. A running server refuses it within a "
        "second, without a restart.",
    )
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id from `keys list`")
    revoke.add_argument("--keys-file", default=None, help=_KEYS_FILE_HELP)
    revoke.set_defaults(handler=cmd_keys_revoke)

    rotate = actions.add_parser(
        "rotate",
        help="replace a key by a new one",
        description="Replace a key by a new one with the same scope, label, kind and admin "
        "flag; the old key stops working within a second. The new key is printed once.",
    )
    rotate.add_argument("key_id", metavar="KEY_ID", help="the key's id from `keys list`")
    rotate.add_argument("--keys-file", default=None, help=_KEYS_FILE_HELP)
    rotate.set_defaults(handler=cmd_keys_rotate)


_KEYS_FILE_HELP = "keys file (default ~/.config/promptory/keys.json)"
