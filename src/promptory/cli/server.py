"""``promptory serve`` and ``promptory keys create|list|revoke|rotate``: the server's commands
(server extra)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import logging
import os
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._protocol import LIVE_KEY_PREFIX, TEST_KEY_PREFIX
from ._common import MissingExtra, Subcommands, fail, import_extra

__all__ = [
    "EXIT_CANNOT_BIND",
    "Option",
    "SERVE_OPTIONS",
    "add_keys",
    "add_options",
    "add_serve",
    "cmd_keys_create",
    "cmd_keys_list",
    "cmd_keys_revoke",
    "cmd_keys_rotate",
    "cmd_serve",
    "is_loopback",
    "resolve_options",
]


def _default_keys_file() -> Path:
    return Path("~/.config/promptory/keys.json").expanduser()


#: The environment variable holding the push webhooks' secret.
WEBHOOK_SECRET_ENV = "PROMPTORY_WEBHOOK_SECRET"

#: Exit status of ``serve`` when the address cannot be bound (port in use, no permission).
EXIT_CANNOT_BIND = 3


@dataclass(frozen=True)
class Option:
    """One ``serve`` option, also read from an environment variable.

    A value on the command line wins over the variable, which wins over `default`.

    Attributes:
        name: ``--flag``, or the positional argument's name.
        env: the environment variable (``PROMPTORY_*``).
        help: what it sets (the variable and default are added to it).
        parse: text -> value; raises ``ValueError`` or ``argparse.ArgumentTypeError``.
        default: the value when neither the command line nor the variable gives one.
        metavar, choices: as argparse takes them.
        switch: a flag without a value (``--no-x``); its variable takes true/false.
    """

    name: str
    env: str
    help: str
    parse: Callable[[str], Any] = str
    default: Any = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    switch: bool = False

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments."""
        return self.name.lstrip("-").replace("-", "_")


class _FromEnv:
    """An option's value not given on the command line: read from its variable (or the
    default) after parsing, so a bad variable is reported only by the command using it."""

    def __init__(self, option: Option) -> None:
        self.option = option


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _switch(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError("must be true or false")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port number, 0 to 65535")
    return value


def _log_level(text: str) -> str:
    value = text.lower()
    if value not in _LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(_LOG_LEVELS)}")
    return value


_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

#: The options of ``promptory serve``, each with its environment variable. Add a row here
#: to add an option; `cmd_serve` reads it from ``args.<dest>``.
SERVE_OPTIONS: tuple[Option, ...] = (
    Option(
        "path",
        "PROMPTORY_REPO",
        "the git repository of prompts (or --pull-from)",
        metavar="PATH",
    ),
    Option("--host", "PROMPTORY_HOST", "address to bind", default="127.0.0.1"),
    Option("--port", "PROMPTORY_PORT", "port to bind", _port, 8000),
    Option("--ref", "PROMPTORY_REF", "branch, tag or commit to serve", default="HEAD"),
    Option(
        "--no-ref-reads",
        "PROMPTORY_NO_REF_READS",
        "refuse ?ref= (400 REF_READS_DISABLED); by default it reads tags and commits the "
        "served ref holds in its history",
        _switch,
        False,
        switch=True,
    ),
    Option("--org", "PROMPTORY_ORG", "single-app repository: its org (with --app)"),
    Option("--app", "PROMPTORY_APP", "single-app repository: its app (with --org)"),
    Option(
        "--keys-file",
        "PROMPTORY_KEYS_FILE",
        "keys file (default ~/.config/promptory/keys.json)",
    ),
    Option(
        "--rate-limit",
        "PROMPTORY_RATE_LIMIT",
        "requests per minute per API key; 0 turns it off",
        _non_negative_int,
        6000,
        "N",
    ),
    Option(
        "--poll-interval",
        "PROMPTORY_POLL_INTERVAL",
        "seconds between checks for new commits",
        _positive_float,
        0.5,
        "S",
    ),
    Option(
        "--ssl-certfile",
        "PROMPTORY_SSL_CERTFILE",
        "serve HTTPS with this certificate (PEM; may hold the key too)",
        metavar="FILE",
    ),
    Option(
        "--ssl-keyfile",
        "PROMPTORY_SSL_KEYFILE",
        "the certificate's private key (PEM)",
        metavar="FILE",
    ),
    Option(
        "--max-connections",
        "PROMPTORY_MAX_CONNECTIONS",
        "open connections at most; more are answered 503 (lowered to fit the file "
        "descriptor limit)",
        _positive_int,
        1024,
        "N",
    ),
    Option(
        "--request-timeout",
        "PROMPTORY_REQUEST_TIMEOUT",
        "seconds a request may take to arrive whole, and an answer may stay unread",
        _positive_float,
        10.0,
        "S",
    ),
    Option(
        "--keep-alive-timeout",
        "PROMPTORY_KEEP_ALIVE_TIMEOUT",
        "seconds an idle keep-alive connection is kept",
        _positive_int,
        5,
        "S",
    ),
    Option(
        "--render-workers",
        "PROMPTORY_RENDER_WORKERS",
        "render worker processes; 0: one per core, at least 2",
        _non_negative_int,
        0,
        "N",
    ),
    Option(
        "--renders-per-key",
        "PROMPTORY_RENDERS_PER_KEY",
        "renders running at once per API key; 0: half the workers, at least 1",
        _non_negative_int,
        0,
        "N",
    ),
    Option(
        "--render-queue",
        "PROMPTORY_RENDER_QUEUE",
        "renders per API key waiting for a worker; one more is answered 429",
        _non_negative_int,
        32,
        "N",
    ),
    # Following a remote, scaling out, watching, metrics (README "Deploying").
    Option(
        "--pull-from",
        "PROMPTORY_PULL_FROM",
        "follow this git remote (https, ssh, file:// or a path) in a mirror of its own, "
        "instead of serving PATH",
        metavar="URL",
    ),
    Option(
        "--pull-interval",
        "PROMPTORY_PULL_INTERVAL",
        "seconds between fetches of --pull-from",
        _positive_float,
        30.0,
        "S",
    ),
    Option("--branch", "PROMPTORY_BRANCH", "the remote's branch to serve (default: its own)"),
    Option(
        "--data-dir",
        "PROMPTORY_DATA_DIR",
        "where the mirror lives (default: ~/.cache/promptory/mirrors/<hash of URL>)",
        metavar="DIR",
    ),
    Option(
        "--webhook-secret",
        WEBHOOK_SECRET_ENV,
        "secret of push webhooks (none: webhooks refused)",
        metavar="SECRET",
    ),
    Option(
        "--redis-url",
        "PROMPTORY_REDIS_URL",
        "share the per-key rate limit through this Redis (redis://host:port/db)",
        metavar="URL",
    ),
    Option(
        "--workers",
        "PROMPTORY_WORKERS",
        "server processes sharing the port",
        _positive_int,
        1,
        "N",
    ),
    Option(
        "--metrics-public",
        "PROMPTORY_METRICS_PUBLIC",
        "anyone may read /metrics (default: loopback clients and unscoped keys only)",
        _switch,
        False,
        switch=True,
    ),
    Option(
        "--watch-max-per-key",
        "PROMPTORY_WATCH_MAX_PER_KEY",
        "open /api/v1/watch streams per API key",
        _positive_int,
        64,
        "N",
    ),
    Option(
        "--watch-max-total",
        "PROMPTORY_WATCH_MAX_TOTAL",
        "open /api/v1/watch streams in all (default: half of --max-connections, and "
        "never more: the other half stays for requests)",
        _positive_int,
        None,
        "N",
    ),
    Option(
        "--log-level",
        "PROMPTORY_LOG_LEVEL",
        "log level",
        _log_level,
        "info",
        choices=_LOG_LEVELS,
    ),
)


def add_options(parser: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    """Add `options` to `parser`, each defaulting to its environment variable."""
    for option in options:
        shown = f" (default {option.default})" if option.default is not None else ""
        help_text = f"{option.help}; env {option.env}{shown}"
        if option.switch:
            parser.add_argument(
                option.name,
                action="store_const",
                const=True,
                default=_FromEnv(option),
                help=help_text,
            )
        elif option.name.startswith("-"):
            parser.add_argument(
                option.name,
                type=option.parse,
                default=_FromEnv(option),
                metavar=option.metavar,
                choices=option.choices,
                help=help_text,
            )
        else:
            parser.add_argument(
                option.dest,
                nargs="?",
                default=_FromEnv(option),
                metavar=option.metavar,
                help=help_text,
            )


def resolve_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, options: tuple[Option, ...]
) -> None:
    """Fill each option not given on the command line from its variable, else its default;
    a bad variable is a usage error naming it."""
    for option in options:
        value = getattr(args, option.dest, None)
        if not isinstance(value, _FromEnv):
            continue
        raw = os.environ.get(option.env)
        if raw is None or raw == "":
            setattr(args, option.dest, option.default)
            continue
        try:
            parsed = option.parse(raw)
        except argparse.ArgumentTypeError as exc:
            parser.error(f"${option.env}={raw[:100]!r}: {exc}")
        except ValueError:  # int() or float() of something else: every such option is a number
            parser.error(f"${option.env}={raw[:100]!r}: not a number")
        if option.choices is not None and parsed not in option.choices:
            parser.error(f"${option.env}={raw[:100]!r}: must be one of {', '.join(option.choices)}")
        setattr(args, option.dest, parsed)


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (or ``localhost``): nothing off this machine
    can reach it."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def _bind_error(exc: OSError, host: str, port: int) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use; pick another with --port N "
            "(or $PROMPTORY_PORT), or stop what is using it"
        )
    if exc.errno == errno.EACCES:
        return (
            f"not allowed to bind {where}: ports below 1024 need privileges; pick another "
            "with --port N (or $PROMPTORY_PORT)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; pick another with --host"
    return f"cannot bind {where}: {exc.strerror or exc}"


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the prompts committed in a git repository."""
    try:
        app_module = import_extra("promptory.server.app")
        connections = import_extra("promptory.server.connections")
        keys_module = import_extra("promptory.server.keys")
        renderpool = import_extra("promptory.server.renderpool")
        runner = import_extra("promptory.server.runner")
        store_module = import_extra("promptory.server.store")
        uvicorn = import_extra("uvicorn")
    except MissingExtra as exc:
        return fail(str(exc), 2)

    logger = logging.getLogger("promptory.server")
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
        logger.warning(
            "the keys file %s is inside the prompt repository; keep it outside", keys_file
        )
    tls = args.ssl_certfile is not None
    if not tls and not is_loopback(args.host):
        logger.warning(
            "serving %s without TLS: API keys cross the network in clear; give "
            "--ssl-certfile/--ssl-keyfile, or put a TLS-terminating proxy in front",
            args.host,
        )
    limits = connections.ConnectionLimits(
        max_connections=args.max_connections,
        request_timeout=args.request_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
    ).fitted(connections.raise_descriptor_limit())
    # Streams hold their connection for good: they must not take the ones requests need.
    watch_max_total = max(1, limits.max_connections // 2)
    if args.watch_max_total is not None and args.watch_max_total > watch_max_total:
        logger.warning(
            "--watch-max-total %d lowered to %d, half of the %d connections allowed: "
            "watch streams would otherwise leave no connection for requests",
            args.watch_max_total,
            watch_max_total,
            limits.max_connections,
        )
    elif args.watch_max_total is not None:
        watch_max_total = args.watch_max_total

    settings = app_module.ServerSettings(
        repo=str(repo),
        keyring=keyring,
        ref=args.ref,
        org=args.org,
        app=args.app,
        rate_limit=args.rate_limit,
        poll_interval=args.poll_interval,
        ref_reads=not args.no_ref_reads,
        render=renderpool.RenderCapacity(
            workers=args.render_workers,
            per_key=args.renders_per_key,
            queue_per_key=args.render_queue,
        ),
        pull_from=args.pull_from,
        pull_interval=args.pull_interval,
        branch=args.branch,
        data_dir=args.data_dir,
        webhook_secret=args.webhook_secret or None,
        redis_url=args.redis_url,
        metrics_public=args.metrics_public,
        watch_max_per_key=args.watch_max_per_key,
        watch_max_total=watch_max_total,
    )

    def config(app: Any, port: int) -> Any:
        return runner.server_config(
            app,
            limits,
            host=args.host,
            port=port,
            log_level=args.log_level,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
        )

    scheme = "https" if tls else "http"
    host = f"[{args.host}]" if ":" in args.host else args.host
    if args.workers > 1:
        workers = import_extra("promptory.server.workers")
        try:
            return int(workers.serve_workers(settings, args.host, args.port, args.workers, config))
        except OSError as exc:
            return fail(_bind_error(exc, args.host, args.port), EXIT_CANNOT_BIND)

    # Bind before anything else: a port in use is said at once, in one line.
    try:
        sock = runner.bind_socket(args.host, args.port)
    except OSError as exc:
        return fail(_bind_error(exc, args.host, args.port), EXIT_CANNOT_BIND)
    with sock:
        try:
            app = app_module.create_app(settings)
        except (store_module.StoreError, store_module.RefNotFoundError, ValueError) as exc:
            return fail(str(exc))
        except Exception as exc:  # the mirror's errors and the like: say what, no traceback
            return fail(f"cannot start: {exc}")
        server_config = config(app, sock.getsockname()[1])
        try:
            server_config.load()
        except (OSError, ssl.SSLError) as exc:
            return fail(f"cannot use the TLS certificate {args.ssl_certfile}: {exc}")
        server = uvicorn.Server(server_config)
        logger.info(
            "serving on %s://%s:%d (%d connections at most)",
            scheme,
            host,
            sock.getsockname()[1],
            limits.max_connections,
        )
        server.run(sockets=[sock])
    return 0 if server.started else 1


def add_serve(commands: Subcommands[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the prompts committed in a git repository",
        description="Serve the prompts committed in a git repository. New commits are "
        "served within about a second, without a restart. API keys come from the keys "
        "file and from $PROMPTORY_API_KEYS. Every option can also be set by the "
        "environment variable named in its help; the command line wins. Exit status: 0 "
        f"stopped, 1 cannot serve, 2 usage, {EXIT_CANNOT_BIND} cannot bind the address.",
    )
    add_options(serve, SERVE_OPTIONS)
    serve.set_defaults(handler=cmd_serve, check=lambda _, args: _check_serve(serve, args))


def _check_serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    resolve_options(parser, args, SERVE_OPTIONS)
    if (args.path is None) == (args.pull_from is None):
        parser.error(
            "give the repository PATH or --pull-from URL, one of them (PATH may also come "
            "from $PROMPTORY_REPO)"
        )
    if args.pull_from is not None and args.ref != "HEAD":
        parser.error("--ref names a ref of a local repository; with --pull-from use --branch")
    if (args.org is None) != (args.app is None):
        parser.error("--org and --app go together (single-app repository)")
    if args.ssl_keyfile is not None and args.ssl_certfile is None:
        parser.error("--ssl-keyfile needs --ssl-certfile")


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
        kind = {LIVE_KEY_PREFIX: "live", TEST_KEY_PREFIX: "test"}.get(r.prefix or "", "?")
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
