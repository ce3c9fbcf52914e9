"""``promptory serve`` and ``promptory keys create``: the server's commands (server extra)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ._common import MissingExtra, Subcommands, fail, import_extra

__all__ = ["add_keys", "add_serve", "cmd_keys_create", "cmd_serve"]

WEBHOOK_SECRET_ENV = "PROMPTORY_WEBHOOK_SECRET"


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
    repo = Path(args.path).resolve() if args.path else Path.cwd()
    if args.path and keys_file.exists() and keys_file.resolve().is_relative_to(repo):
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
        **_production_settings(args),
    )
    if args.workers > 1:
        workers = import_extra("promptory.server.workers")
        return int(
            workers.serve_workers(settings, args.host, args.port, args.workers, args.log_level)
        )
    try:
        app = app_module.create_app(settings)
    except (store_module.StoreError, store_module.RefNotFoundError, ValueError) as exc:
        return fail(str(exc))
    except Exception as exc:  # the mirror's errors and the like: say what, never a traceback
        return fail(f"cannot start: {exc}")
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


# --- production serving: following a remote, scaling out, watching, metrics ----------------


def _production_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The `ServerSettings` fields of the production flags."""
    return {
        "pull_from": args.pull_from,
        "pull_interval": args.pull_interval,
        "branch": args.branch,
        "data_dir": args.data_dir,
        "webhook_secret": args.webhook_secret or os.environ.get(WEBHOOK_SECRET_ENV) or None,
        "redis_url": args.redis_url,
        "metrics_public": args.metrics_public,
        "watch_max_per_key": args.watch_max_per_key,
        "watch_max_total": args.watch_max_total,
    }


def _add_production_flags(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("following a remote and scaling out")
    group.add_argument(
        "--pull-from",
        metavar="URL",
        help="follow this git remote (https, ssh, file:// or a path) in a mirror of its own, "
        "instead of serving PATH",
    )
    group.add_argument(
        "--pull-interval",
        type=_positive_float,
        default=30.0,
        metavar="S",
        help="seconds between fetches of --pull-from (default %(default)s)",
    )
    group.add_argument("--branch", help="the remote's branch to serve (default: its default)")
    group.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the mirror lives (default: ~/.cache/promptory/mirrors/<hash of URL>)",
    )
    group.add_argument(
        "--webhook-secret",
        metavar="SECRET",
        help=f"secret of push webhooks (default ${WEBHOOK_SECRET_ENV}; none: webhooks refused)",
    )
    group.add_argument(
        "--redis-url",
        metavar="URL",
        help="share the per-key rate limit through this Redis (redis://host:port/db)",
    )
    group.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="server processes sharing the port (default %(default)s)",
    )
    group.add_argument(
        "--metrics-public",
        action="store_true",
        help="anyone may read /metrics (default: loopback clients and unscoped keys only)",
    )
    group.add_argument(
        "--watch-max-per-key",
        type=_positive_int,
        default=64,
        metavar="N",
        help="open /api/v1/watch streams per API key (default %(default)s)",
    )
    group.add_argument(
        "--watch-max-total",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="open /api/v1/watch streams in all (default %(default)s)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def add_serve(commands: Subcommands[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the prompts committed in a git repository",
        description="Serve the prompts committed in a git repository. New commits are "
        "served within about a second, without a restart. API keys come from the keys "
        "file and from $PROMPTORY_API_KEYS.",
    )
    serve.add_argument(
        "path", metavar="PATH", nargs="?", help="the git repository of prompts (or --pull-from)"
    )
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
    _add_production_flags(serve)
    serve.set_defaults(handler=cmd_serve, check=_check_serve)


def _check_serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.org is None) != (args.app is None):
        parser.error("--org and --app go together (single-app repository)")
    if (args.path is None) == (args.pull_from is None):
        parser.error("give the repository PATH or --pull-from URL (one of them)")
    if args.pull_from is not None and args.ref != "HEAD":
        parser.error("--ref names a ref of a local repository; with --pull-from use --branch")


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
