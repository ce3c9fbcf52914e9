"""The HTTP app: `create_app(settings)` gives a Starlette app serving prompts from git.

Rules of this module:

* No middleware. Authentication, rate limiting and lookup happen inside each endpoint, and
  the prompt endpoints are plain ASGI callables that read the raw headers and query string:
  a cached prompt is answered from bytes made once per record (JSON, ETag, headers), with no
  JSON encoding, no `Request` object and no thread hop.
* Anything that may parse files or build a snapshot runs in the thread pool, and renders run
  on the render workers with a per-key cap (`renderpool`), so a slow template or a large
  re-index never stalls other requests.
* Every error has one envelope, ``{"error": {"code": "...", "message": "..."}}``, including
  Starlette's own 404, 405 and 500 (exception handlers). `openapi.ERROR_CODES` lists the
  codes. A step that refuses a request raises `ApiError`; the endpoint wrapper
  (`answers.Endpoint`) is the one place that answers it.
* Order of checks: authentication (401), rate limit (429), request shape (400, 413), then
  the scope (403) as soon as the org and app are known from the path (by-name), before the
  ref (404) and the lookup (404). By id (get, render) a prompt outside the key's scope
  answers exactly as an unknown id (404): a key never learns what exists outside it.
* ``If-None-Match`` follows RFC 9110: weak comparison, lists, ``*``. A 304 carries the ETag
  and Cache-Control of the 200 it stands for.
* An empty query value counts as not given (``?org=&app=`` lists everything).
* The rate limit is per API key. Keys are never logged; a key is named by its id (the
  first 12 hex digits of its digest).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .._chat import ChatError
from .._controls import escape_controls
from .._protocol import ENVIRONMENTS
from ..exceptions import RenderError
from .answers import (
    JSON,
    ApiError,
    Endpoint,
    Prebuilt,
    echo,
    error_response,
    json_response,
    unknown_id,
)
from .history_routes import history_routes
from .includes import include_problems
from .keys import KeyRecord, KeyRing
from .messages import rendered_answer, with_input_defaults
from .metrics import CONTENT_TYPE, ServerMetrics
from .mirror import Follower, Mirror, default_data_dir
from .openapi import openapi_document
from .ratelimit import RateLimiter
from .records import PromptHeaders, PromptRecord, dump_json
from .render import IncludeError, RenderJob, plan
from .renderpool import Busy, Gone, RenderCapacity, RenderPool
from .shared_limit import SharedRateLimiter
from .store import PENDING, PromptStore, RefNotFoundError, Snapshot
from .ui import WebUI
from .watch import TooManyWatchers, WatchHub, WatchResponse
from .webhooks import MAX_WEBHOOK_BODY, MAX_WEBHOOK_READS, SIGNATURE_HEADERS, verify_webhook

__all__ = ["CACHE_CONTROL_LIVE", "CACHE_CONTROL_PINNED", "ServerSettings", "create_app"]

logger = logging.getLogger("promptory.server")

#: Cache-Control of prompts served from the followed ref.
CACHE_CONTROL_LIVE = "private, max-age=60, stale-while-revalidate=300"
#: Cache-Control of prompts served for a commit id or tag given as ``?ref=``.
CACHE_CONTROL_PINNED = "private, max-age=31536000, immutable"

_LIVE = CACHE_CONTROL_LIVE.encode("ascii")
_PINNED = CACHE_CONTROL_PINNED.encode("ascii")


@dataclass
class ServerSettings:
    """How to run the server.

    Attributes:
        repo: the git repository to serve.
        keyring: the API keys accepted.
        ref: the branch, tag, commit or ``HEAD`` to serve and follow.
        org, app: serve a single-app repository as this org and app (both or neither).
        rate_limit: requests per minute per API key; 0 turns limiting off.
        poll_interval: seconds between checks of the ref for new commits.
        max_body: largest render request body, in bytes.
        prepare_in_background: parse not-yet-requested prompts between polls.
        ref_reads: answer ``?ref=`` (tags and commits the served ref holds); when False,
            a request with ``?ref=`` gets 400 ``REF_READS_DISABLED``.
        render: the render workers and the per-key render cap.
        pull_from: follow this git remote (https, ssh, file:// or a path) instead of
            serving `repo`: a bare mirror is kept in `data_dir`.
        pull_interval: seconds between fetches of `pull_from`.
        branch: the remote's branch to serve (None: its default branch).
        data_dir: where the mirror lives (None: a folder per URL under ~/.cache/promptory).
        webhook_secret: the secret push webhooks are signed with (None: webhooks refused).
        redis_url: share the rate limit through this Redis.
        metrics_public: let anyone read /metrics (else loopback clients and unscoped keys).
        watch_max_per_key, watch_max_total: open /api/v1/watch streams allowed (keep
            `watch_max_total` at most half the connection cap: ``serve`` lowers it so).
        watch_heartbeat: seconds between heartbeats on a watch stream.
    """

    repo: str | os.PathLike[str]
    keyring: KeyRing
    ref: str = "HEAD"
    org: str | None = None
    app: str | None = None
    rate_limit: int = 6000
    poll_interval: float = 0.5
    max_body: int = 1024 * 1024
    prepare_in_background: bool = True
    ref_reads: bool = True
    render: RenderCapacity = field(default_factory=RenderCapacity)
    pull_from: str | None = None
    pull_interval: float = 30.0
    branch: str | None = None
    data_dir: str | os.PathLike[str] | None = None
    webhook_secret: str | None = None
    redis_url: str | None = None
    metrics_public: bool = False
    watch_max_per_key: int = 64
    watch_max_total: int = 512
    watch_heartbeat: float = 15.0


def _printable(text: str) -> str:
    """`text` with the bytes of a non-UTF-8 file name (kept by pygit2 as surrogate escapes)
    written as ``\\xNN``: JSON in UTF-8 cannot carry them."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# An entity tag in an If-None-Match list: optional W/, then a quoted opaque tag.
_ENTITY_TAG = re.compile(rb'(?:W/)?("[^"]*")')


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """RFC 9110 section 13.1.2: does `If-None-Match` match our (strong) `etag`?

    Weak comparison: ``W/"x"`` matches ``"x"``. ``*`` matches any current representation.
    """
    if if_none_match == etag:
        return True
    if if_none_match.strip() == b"*":
        return True
    return any(tag == etag for tag in _ENTITY_TAG.findall(if_none_match))


_ENCODED_SLASH = error_response(
    404, "NOT_FOUND", "not found: a prompt id or name never holds an encoded '/' (%2F)"
)


class _App(Starlette):
    """Starlette, refusing encoded slashes before routing.

    Routes are matched on the decoded path, where an encoded '/' (which clients send for an
    id or name holding one) would read as a separator and reach another route, or a 405.
    No id or name holds a '/': such a request finds nothing."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path = scope.get("raw_path")
        if raw_path and b"%2" in raw_path and (b"%2f" in raw_path or b"%2F" in raw_path):
            await _ENCODED_SLASH(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class _Server:
    """The endpoints, over one store, keyring, limiter and renderer."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        self.mirror: Mirror | None = None
        repo, ref = os.fspath(settings.repo), settings.ref
        if settings.pull_from:
            data_dir = settings.data_dir or default_data_dir(settings.pull_from)
            self.mirror = Mirror(settings.pull_from, data_dir, settings.branch)
            repo, ref = self.mirror.path, "HEAD"
        self.store = PromptStore(
            repo,
            ref=ref,
            org=settings.org,
            app=settings.app,
            poll_interval=settings.poll_interval,
            prepare_in_background=settings.prepare_in_background,
        )
        self.keyring = settings.keyring
        self.limiter: RateLimiter | SharedRateLimiter
        if settings.redis_url and settings.rate_limit:
            self.limiter = SharedRateLimiter(
                settings.rate_limit,
                settings.redis_url,
                on_fallback=self.metrics.rate_limit_fallbacks.inc,
            )
            shared = self.limiter
            self.metrics.rate_limit_shared.set_function(lambda: 1.0 if shared.shared else 0.0)
        else:
            self.limiter = RateLimiter(settings.rate_limit)
        self.renders = RenderPool(settings.render)
        self.openapi = dump_json(openapi_document())
        self.follower: Follower | None = None
        if self.mirror is not None:
            self.follower = Follower(
                self.mirror,
                self.store.refresh,
                settings.pull_interval,
                observe=self._observe_fetch,
            )
            self.metrics.track_last_fetch(lambda: self._follow_status_last())
        self.watch = WatchHub(
            max_per_key=settings.watch_max_per_key,
            max_total=settings.watch_max_total,
            heartbeat=settings.watch_heartbeat,
            on_count=self.metrics.watch_subscribers.set,
        )
        self._webhook_reads = 0  # webhook bodies being read (on the event loop)
        self.store.on_swap(self._swapped)
        self._served(self.store.snapshot)

    # --- following and observing ------------------------------------------------------------

    def _follow_status_last(self) -> float | None:
        return None if self.follower is None else self.follower.status.last_success

    def _observe_fetch(self, fetch: float, index: float | None, ok: bool) -> None:
        self.metrics.fetch_seconds.observe(fetch)
        if index is not None:
            self.metrics.index_seconds.observe(index)
        if not ok:
            self.metrics.fetch_failures.inc()

    def _served(self, snapshot: Snapshot) -> None:
        self.metrics.set_served(
            snapshot.commit, snapshot.file_count, len(snapshot.skipped_problems())
        )

    def _swapped(self, before: Snapshot, after: Snapshot) -> None:
        self.metrics.commits.inc()
        self._served(after)
        self.watch.served(before, after)

    # --- shared steps ------------------------------------------------------------------------

    def _authenticate(self, scope: Scope) -> tuple[KeyRecord, bytes | None]:
        """The caller's key and its If-None-Match header (the rate limit not charged).

        Raises:
            ApiError: 401 without a known key.
        """
        authorization = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"if-none-match":
                if_none_match = value
        if authorization is None:
            raise _unauthorized("missing Authorization header (Bearer API key)")
        scheme, _, presented = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            raise _unauthorized("Authorization must be 'Bearer <API key>'")
        key = self.keyring.verify(presented.strip().decode("latin-1"))
        if key is None:
            raise _unauthorized("unknown or revoked API key")
        return key, if_none_match

    async def rate_wait(self, key_id: str) -> int:
        """Charge one request to `key_id`: 0 when it may go on, else the seconds to wait.
        A limit shared through Redis asks Redis off the event loop (a slow Redis must never
        stall every request of the process); the local one answers in place."""
        if isinstance(self.limiter, SharedRateLimiter):
            return await run_in_threadpool(self.limiter.check, key_id)
        return self.limiter.check(key_id)

    async def _admit(self, scope: Scope) -> tuple[KeyRecord, bytes | None]:
        """The caller's key and its If-None-Match header, the request charged to the key.

        Raises:
            ApiError: 401 without a known key, 429 over the key's rate limit.
        """
        key, if_none_match = self._authenticate(scope)
        wait = await self.rate_wait(key.id)
        if wait:
            raise ApiError(
                429,
                "RATE_LIMITED",
                f"rate limit of {self.limiter.per_minute} requests a minute per API key "
                f"reached; retry in {wait} s",
                {"Retry-After": str(wait)},
            )
        return key, if_none_match

    @staticmethod
    def _query(scope: Scope) -> dict[str, str]:
        raw = scope["query_string"]
        if not raw:
            return {}
        query: dict[str, str] = {}
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if value and name not in query:
                query[name] = value
        return query

    @staticmethod
    def _environment(query: dict[str, str]) -> str | None:
        """The ``?environment=`` asked for, if any.

        Raises:
            ApiError: 400, not an environment.
        """
        environment = query.get("environment")
        if environment is None or environment in ENVIRONMENTS:
            return environment
        raise ApiError(
            400,
            "INVALID_ENVIRONMENT",
            f"environment {echo(environment)!r} is not one of {', '.join(ENVIRONMENTS)}",
        )

    async def _snapshot(self, query: dict[str, str]) -> tuple[Snapshot, bool]:
        """The snapshot to answer from and whether it is pinned (an immutable ref).

        Raises:
            ApiError: 400 when ref reads are off, 404 for a ref the server does not hold.
        """
        ref = query.get("ref")
        if ref is None:
            return self.store.snapshot, False
        if not self.settings.ref_reads:
            raise ApiError(
                400,
                "REF_READS_DISABLED",
                "this server does not answer ?ref= (it runs with --no-ref-reads); ask "
                "without it for the commit served",
            )
        try:
            resolved = await run_in_threadpool(self.store.snapshot_at, ref)
        except RefNotFoundError as exc:
            raise ApiError(404, "REF_NOT_FOUND", f"ref {echo(ref)!r}: {exc.reason}") from None
        return resolved.snapshot, resolved.pinned

    def readable_sha(self, ref: str) -> str:
        """The commit a client may read by `ref` (histories and diffs): as ``?ref=``, by
        the store's rule, and nothing when ref reads are off.

        Raises:
            RefNotFoundError: not readable.
        """
        if not self.settings.ref_reads:
            raise RefNotFoundError(ref, "this server reads no other commit (--no-ref-reads)")
        return self.store.readable_sha(ref)

    @staticmethod
    def _prompt(record: PromptRecord, if_none_match: bytes | None, pinned: bool) -> Response:
        served = record.ready
        assert served is not None  # lookups only return prepared, valid records
        policy = _PINNED if pinned else _LIVE
        headers = record.headers.get(policy)
        if headers is None:
            headers = record.headers[policy] = _prompt_headers(served.json, served.etag, policy)
        # Copies: a response's headers may be changed on the way out; the cache's must not.
        if if_none_match is not None and etag_matches(if_none_match, headers.etag):
            return Prebuilt(304, b"", list(headers.not_modified))
        return Prebuilt(200, served.json, list(headers.ok))

    # --- endpoints ---------------------------------------------------------------------------

    async def get_by_id(self, scope: Scope, receive: Receive) -> Response:
        key, if_none_match = await self._admit(scope)
        query = self._query(scope)
        snapshot, pinned = (
            await self._snapshot(query) if "ref" in query else (self.store.snapshot, False)
        )
        prompt_id: str = scope["path_params"]["id"]
        record = snapshot.peek_by_id(prompt_id)
        if record is PENDING:
            record = await run_in_threadpool(snapshot.find_by_id, prompt_id)
        # Outside the key's scope an id answers as an unknown one: no existence oracle.
        if not isinstance(record, PromptRecord) or not key.allows(record.org, record.app):
            raise unknown_id(prompt_id)
        return self._prompt(record, if_none_match, pinned)

    async def get_by_name(self, scope: Scope, receive: Receive) -> Response:
        key, if_none_match = await self._admit(scope)
        query = self._query(scope)
        environment = self._environment(query)
        params = scope["path_params"]
        org: str = params["org"]
        app: str = params["app"]
        name: str = params["name"]
        if not key.allows(org, app):
            raise _forbidden(key, org, app)
        snapshot, pinned = (
            await self._snapshot(query) if "ref" in query else (self.store.snapshot, False)
        )
        record = snapshot.peek_by_name(org, app, name, environment)
        if record is PENDING:
            record = await run_in_threadpool(snapshot.find_by_name, org, app, name, environment)
        if record is None:
            if not snapshot.has_app(org, app):
                raise ApiError(404, "APP_NOT_FOUND", f"no app {echo(org)}/{echo(app)}")
            where = f" in {environment}" if environment else ""
            raise ApiError(
                404,
                "PROMPT_NOT_FOUND",
                f"no active prompt {echo(org)}/{echo(app)}/{echo(name)}{where}",
            )
        assert isinstance(record, PromptRecord)
        return self._prompt(record, if_none_match, pinned)

    async def render(self, scope: Scope, receive: Receive) -> Response:
        key, _ = await self._admit(scope)
        body = await self._read_body(scope, receive)
        variables = self._variables(body)
        snapshot, _ = await self._snapshot(self._query(scope))
        prompt_id: str = scope["path_params"]["id"]
        found_job = await run_in_threadpool(self._render_job, snapshot, prompt_id)
        if found_job is None or not key.allows(found_job[0].org, found_job[0].app):
            raise unknown_id(prompt_id)
        record, job = found_job
        if isinstance(job, IncludeError):
            raise ApiError(400, "RENDER_ERROR", job.message)
        served = record.ready
        assert served is not None
        given = with_input_defaults(served.data, variables)
        gone = asyncio.ensure_future(_disconnected(receive))
        started = time.perf_counter()
        try:
            text = await self.renders.render(key.id, job, given, gone)
        except Busy as exc:
            raise ApiError(
                429, "RATE_LIMITED", exc.message, {"Retry-After": str(exc.retry_after)}
            ) from None
        except RenderError as exc:
            raise ApiError(400, "RENDER_ERROR", exc.message) from None
        except Gone:
            raise ApiError(
                503, "SERVER_BUSY", "the client went away before its render ran"
            ) from None
        finally:
            gone.cancel()
            self.metrics.render_seconds.observe(time.perf_counter() - started)
        try:
            text, messages = rendered_answer(
                job, record.text.body, served.data["role"], text, given
            )
        except ChatError as exc:
            raise ApiError(400, "RENDER_ERROR", f"prompt {record.qualified_name}: {exc}") from None
        return json_response(
            {
                "id": record.id,
                "name": record.name,
                "rendered_body": text,
                "meta": served.meta,
                "model": served.data["model"],
                "messages": messages,
            }
        )

    @staticmethod
    def _render_job(
        snapshot: Snapshot, prompt_id: str
    ) -> tuple[PromptRecord, RenderJob | IncludeError] | None:
        """The prompt and its render job (or why its includes cannot resolve); None if no
        such prompt. The caller checks the key's scope before using either."""
        record = snapshot.find_by_id(prompt_id)
        if record is None:
            return None
        try:
            return record, plan(snapshot, record).job(record.qualified_name)
        except IncludeError as exc:
            return record, exc

    async def _read_body(self, scope: Scope, receive: Receive, limit: int | None = None) -> bytes:
        """The request body, up to `limit` bytes (the server's body limit by default).

        Raises:
            ApiError: 413 over the limit, 400 for a Content-Length that is not a number.
        """
        limit = self.settings.max_body if limit is None else limit
        too_large = ApiError(
            413, "PAYLOAD_TOO_LARGE", f"request body is over the limit of {limit:,} bytes"
        )
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise ApiError(400, "INVALID_BODY", "Content-Length is not a number") from None
                if declared > limit:
                    raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; nothing will be sent
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    def _variables(body: bytes) -> dict[str, Any] | None:
        """The ``variables`` of a render request body (None when not given).

        Raises:
            ApiError: 400, the body is not ``{"variables": {...}}`` in JSON.
        """
        if not body.strip():
            return None
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            detail = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
            raise ApiError(
                400, "INVALID_BODY", f"request body is not valid JSON: {detail}"
            ) from None
        if not isinstance(data, dict):
            raise ApiError(
                400, "INVALID_BODY", 'request body must be a JSON object: {"variables": {...}}'
            )
        variables = data.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise ApiError(400, "INVALID_BODY", "'variables' must be a JSON object")
        if b"\\u" in body:
            try:  # JSON may escape a lone surrogate ("\ud800"); UTF-8 cannot carry it back
                dump_json(variables)
            except UnicodeEncodeError:
                raise ApiError(
                    400, "INVALID_BODY", "request body holds an unpaired surrogate escape"
                ) from None
        return variables

    async def list_prompts(self, scope: Scope, receive: Receive) -> Response:
        key, _ = await self._admit(scope)
        query = self._query(scope)
        environment = self._environment(query)
        org, app = query.get("org"), query.get("app")
        if key.scope_org is not None and (
            (org is not None and org != key.scope_org)
            or (app is not None and key.scope_app is not None and app != key.scope_app)
        ):
            raise _forbidden(key, org or key.scope_org, app or "*")
        snapshot, _ = await self._snapshot(query)
        records = await run_in_threadpool(
            snapshot.prompts,
            org=org,
            app=app,
            environment=environment,
            tag=query.get("tag"),
            allow=None if key.unscoped else key.allows,
        )
        parts = [
            b'{"prompts":[',
            b",".join(record.ready.json for record in records if record.ready is not None),
            b'],"count":',
            str(len(records)).encode("ascii"),
            b',"commit":',
            dump_json(snapshot.commit),
            b"}",
        ]
        body = b"".join(parts)
        return Prebuilt(
            200,
            body,
            [(b"content-type", JSON), (b"content-length", str(len(body)).encode("ascii"))],
        )

    async def status(self, scope: Scope, receive: Receive) -> Response:
        key, _ = await self._admit(scope)
        snapshot = self.store.snapshot
        allow = None if key.unscoped else key.allows

        def gather() -> dict[str, Any]:
            problems = snapshot.problems(allow) + include_problems(snapshot, allow)
            problems.sort(key=lambda problem: problem.path)
            served = snapshot.prompts(allow=allow)
            files = sum(1 for r in snapshot.records() if allow is None or allow(r.org, r.app))
            status: dict[str, Any] = {
                "commit": snapshot.commit,
                "ref": self.store.ref,
                "committed_at": snapshot.committed_at,
                "files": files,
                "prompts": len(served),
                "problems": [
                    {"path": _printable(p.path), "message": _printable(p.message)} for p in problems
                ],
            }
            if self.follower is not None:
                status["follow"] = self.follower.status.as_json(snapshot.commit, time.time())
            return status

        return json_response(await run_in_threadpool(gather))

    async def health(self, scope: Scope, receive: Receive) -> Response:
        snapshot = self.store.snapshot
        return json_response(
            {"status": "ok", "commit": snapshot.commit, "prompts": snapshot.file_count}
        )

    async def ready(self, scope: Scope, receive: Receive) -> Response:
        """Readiness: 200 once a commit is served, else 503."""
        commit = self.store.snapshot.commit
        body: dict[str, Any] = {"status": "ready" if commit else "not ready", "commit": commit}
        if self.follower is not None:
            body["follow"] = self.follower.status.as_json(commit, time.time())
        if commit is None:
            return json_response(body, 503)
        return json_response(body)

    async def webhook(self, scope: Scope, receive: Receive) -> Response:
        """A signed push webhook from a forge: fetch now."""
        signed = any(name in SIGNATURE_HEADERS for name, _ in scope["headers"])
        body = b""  # unsigned, or no secret: refused below without reading the body
        if self.settings.webhook_secret and signed:
            if self._webhook_reads >= MAX_WEBHOOK_READS:
                raise ApiError(
                    429,
                    "RATE_LIMITED",
                    f"{MAX_WEBHOOK_READS} webhook bodies are being read; retry shortly",
                    {"Retry-After": "1"},
                )
            self._webhook_reads += 1
            try:
                body = await self._read_body(scope, receive, MAX_WEBHOOK_BODY)
            finally:
                self._webhook_reads -= 1
        forge = verify_webhook(self.settings.webhook_secret, scope["headers"], body)
        if forge is None:
            why = (
                "no webhook secret is configured (--webhook-secret or PROMPTORY_WEBHOOK_SECRET)"
                if not self.settings.webhook_secret
                else "missing or wrong signature (X-Hub-Signature-256, X-Gitlab-Token or "
                "X-Gitea-Signature)"
            )
            raise ApiError(401, "UNAUTHORIZED", f"webhook refused: {why}")
        if self.follower is None:
            raise ApiError(
                409, "NOT_FOLLOWING", "this server does not follow a remote (--pull-from)"
            )
        self.follower.trigger()
        return json_response({"accepted": True, "forge": forge}, 202)

    async def watch_stream(self, scope: Scope, receive: Receive) -> Response:
        """Server-Sent Events: one event per served commit, within the key's scope."""
        key, _ = await self._admit(scope)
        last_event_id = None
        for name, value in scope["headers"]:
            if name == b"last-event-id":
                last_event_id = value.decode("latin-1").strip()[:200]
        if scope["method"] == "HEAD":
            # What a GET would start, without a stream: nothing to subscribe or to end (how
            # an event-stream response answers HEAD differs between sse-starlette releases).
            return Response(
                status_code=200,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )
        try:
            subscriber = self.watch.subscribe(key.id)
        except TooManyWatchers as exc:
            raise ApiError(429, "TOO_MANY_WATCHERS", exc.message, {"Retry-After": "30"}) from None
        allow = None if key.unscoped else key.allows
        keyring, digest, scoped = self.keyring, key.sha256, key.scope

        def still_valid() -> bool:
            # Checked on every event and heartbeat: revoking a key (or changing its scope)
            # ends its open streams, as it ends its next request.
            current = keyring.by_digest(digest)
            return current is not None and current.scope == scoped

        return WatchResponse(
            self.watch.events(subscriber, last_event_id, allow, still_valid),
            lambda: self.watch.unsubscribe(subscriber),
            ping=self.settings.watch_heartbeat,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def metrics_text(self, scope: Scope, receive: Receive) -> Response:
        """Prometheus metrics, for loopback clients, unscoped keys, or anyone if public."""
        if not self.settings.metrics_public and not _loopback(scope):
            key, _ = await self._admit(scope)
            if not key.unscoped:
                raise ApiError(
                    403, "FORBIDDEN", "metrics are for loopback clients and unscoped API keys"
                )
        body = self.metrics.scrape()
        return Prebuilt(
            200,
            body,
            [
                (b"content-type", CONTENT_TYPE.encode("ascii")),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        )

    async def openapi_json(self, scope: Scope, receive: Receive) -> Response:
        return Prebuilt(
            200,
            self.openapi,
            [(b"content-type", JSON), (b"content-length", str(len(self.openapi)).encode())],
        )


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message, {"WWW-Authenticate": "Bearer"})


def _forbidden(key: KeyRecord, org: str, app: str) -> ApiError:
    return ApiError(
        403,
        "FORBIDDEN",
        f"this API key is scoped to {key.scope}; it cannot read {echo(org)}/{echo(app)}",
    )


def _prompt_headers(body: bytes, etag: str, cache_control: bytes) -> PromptHeaders:
    """The headers a prompt is served with under one cache policy."""
    quoted = etag.encode("ascii")
    validators = [(b"etag", quoted), (b"cache-control", cache_control)]
    return PromptHeaders(
        etag=quoted,
        ok=[
            (b"content-type", JSON),
            (b"content-length", str(len(body)).encode("ascii")),
            *validators,
        ],
        not_modified=validators,
    )


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone away (to be cancelled once answered)."""
    while (await receive())["type"] != "http.disconnect":
        pass


# --- errors Starlette raises itself ------------------------------------------------------------

_STATUS_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        message = f"no route {request.method} {echo(request.url.path)}"
    elif status == 405:
        message = f"{request.method} is not allowed on {echo(request.url.path)}"
    else:
        message = exc.detail
    return error_response(status, _STATUS_CODES.get(status, f"HTTP_{status}"), message, exc.headers)


def _loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


async def _server_error(request: Request, exc: Exception) -> Response:
    path = escape_controls(request.url.path)  # decoded: %0A would forge a log line
    logger.error("error answering %s %s", request.method, path, exc_info=exc)
    return error_response(500, "INTERNAL_ERROR", "internal server error")


def _mcp_mount(server: _Server) -> Any:
    """The ``/mcp`` endpoint (`mcp_route`), or None without the ``mcp`` extra."""
    try:
        from .mcp_route import McpMount
    except ImportError:
        logger.info(
            "MCP is off at /mcp: install the mcp extra (pip install '.[mcp]' in a clone) to "
            "serve it"
        )
        return None
    return McpMount(server)


def create_app(settings: ServerSettings) -> Starlette:
    """The server's ASGI app, over `settings.repo`.

    The repository is indexed here, so a bad path or ref fails at once; polling for new
    commits starts and stops with the app's lifespan. The store is ``app.state.store``.

    Raises:
        promptory.server.store.StoreError: the repository cannot be read.
        promptory.server.store.RefNotFoundError: the ref names no commit.
    """
    server = _Server(settings)
    mcp = _mcp_mount(server)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        server.watch.start(asyncio.get_running_loop(), server.store.snapshot)
        server.store.start()
        if server.follower is not None:
            server.follower.start()
        await run_in_threadpool(server.renders.start)
        try:
            async with mcp.lifespan() if mcp is not None else contextlib.nullcontext():
                yield
        finally:
            server.watch.close()
            if server.follower is not None:
                server.follower.stop()
            server.store.stop()
            server.renders.stop()
            if isinstance(server.limiter, SharedRateLimiter):
                server.limiter.close()

    count = server.metrics.count

    def endpoint(path: str, handler: Callable[[Scope, Receive], Awaitable[Response]]) -> Any:
        return Endpoint(handler, path, count)

    routes = [
        Route("/api/v1/prompts", endpoint("/api/v1/prompts", server.list_prompts), methods=["GET"]),
        Route(
            "/api/v1/prompts/by-name/{org}/{app}/{name}",
            endpoint("/api/v1/prompts/by-name/{org}/{app}/{name}", server.get_by_name),
            methods=["GET"],
        ),
        Route(
            "/api/v1/prompts/{id}",
            endpoint("/api/v1/prompts/{id}", server.get_by_id),
            methods=["GET"],
        ),
        Route(
            "/api/v1/prompts/{id}/render",
            endpoint("/api/v1/prompts/{id}/render", server.render),
            methods=["POST"],
        ),
        Route("/api/v1/status", endpoint("/api/v1/status", server.status), methods=["GET"]),
        Route("/api/v1/watch", endpoint("/api/v1/watch", server.watch_stream), methods=["GET"]),
        Route(
            "/api/v1/webhooks/git",
            endpoint("/api/v1/webhooks/git", server.webhook),
            methods=["POST"],
        ),
        Route("/health", endpoint("/health", server.health), methods=["GET"]),
        Route("/ready", endpoint("/ready", server.ready), methods=["GET"]),
        Route("/metrics", Endpoint(server.metrics_text), methods=["GET"]),
        Route("/openapi.json", Endpoint(server.openapi_json), methods=["GET"]),
        *history_routes(server),
        *WebUI(server).routes(),
        *([Route("/mcp", mcp, methods=["POST"])] if mcp is not None else []),
    ]
    app = _App(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    # `/api/v1/prompts/` must be a 404, not a redirect the API does not document.
    app.router.redirect_slashes = False
    app.state.store = server.store
    app.state.keyring = server.keyring
    app.state.follower = server.follower
    app.state.watch = server.watch
    app.state.metrics = server.metrics
    app.state.limiter = server.limiter
    return app
