"""The history routes of the API: a prompt's commits, and a diff between two of them.

``GET /api/v1/prompts/{id}/history?limit=N&ref=R`` and
``GET /api/v1/prompts/{id}/diff?from=A&to=B&ref=R``. Both take the key, rate limit, ref and
scope checks of the other prompt routes, in the same order (401, 429, 400, 404 for a ref,
then the prompt: 404 when absent or out of the key's scope, alike), and the same error
envelope. The walking and diffing run in the thread pool (see `revisions`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .records import PromptRecord, dump_json
from .revisions import DEFAULT_HISTORY, MAX_HISTORY, DiffTooLarge, parse_limit, shared_revisions
from .store import RefNotFoundError, Snapshot

if TYPE_CHECKING:
    from .app import _Server

__all__ = ["history_routes"]

_MAX_ECHO = 200


def _answer(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dump_json(data), status, headers, media_type="application/json")


def _error(status: int, code: str, message: str) -> Response:
    return _answer(status, {"error": {"code": code, "message": message}})


def _echo(value: str) -> str:
    return value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "..."


class _HistoryEndpoints:
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.revisions = shared_revisions(server, os.fspath(server.store.path), server.readable_sha)

    async def _prompt(
        self, scope: Scope, query: dict[str, str]
    ) -> tuple[Snapshot, PromptRecord] | Response:
        """The snapshot and the prompt of the request, or the error to answer."""
        server = self.server
        found = await server._snapshot(query)
        if isinstance(found, Response):
            return found
        snapshot, _ = found
        prompt_id: str = scope["path_params"]["id"]
        record = await run_in_threadpool(snapshot.find_by_id, prompt_id)
        if record is None:
            return _error(404, "PROMPT_NOT_FOUND", f"no prompt with id {_echo(prompt_id)!r}")
        return snapshot, record

    async def history(self, scope: Scope, receive: Receive) -> Response:
        server = self.server
        key, _ = server._admit(scope)
        if isinstance(key, Response):
            return key
        query = server._query(scope)
        raw_limit = query.get("limit", str(DEFAULT_HISTORY))
        limit = parse_limit(raw_limit)
        if limit is None:
            return _error(
                400,
                "INVALID_QUERY",
                f"limit {_echo(raw_limit)!r} must be a whole number from 1 to {MAX_HISTORY}",
            )
        found = await self._prompt(scope, query)
        if isinstance(found, Response):
            return found
        snapshot, record = found
        if not key.allows(record.org, record.app):
            return server._unknown_id(scope["path_params"]["id"])
        assert snapshot.commit is not None  # a snapshot holding a prompt has a commit
        history = await run_in_threadpool(
            self.revisions.history, snapshot.commit, record.path, limit
        )
        return _answer(
            200,
            {
                "id": record.id,
                "path": record.path,
                "commit": snapshot.commit,
                "revisions": [revision.to_json() for revision in history.revisions],
                "truncated": history.truncated,
            },
        )

    async def diff(self, scope: Scope, receive: Receive) -> Response:
        server = self.server
        key, _ = server._admit(scope)
        if isinstance(key, Response):
            return key
        query = server._query(scope)
        before = query.get("from")
        if before is None:
            return _error(
                400, "INVALID_QUERY", "give the commits to compare: ?from=SHA_OR_TAG[&to=...]"
            )
        found = await self._prompt(scope, query)
        if isinstance(found, Response):
            return found
        snapshot, record = found
        if not key.allows(record.org, record.app):
            return server._unknown_id(scope["path_params"]["id"])
        try:
            old = await run_in_threadpool(self.revisions.resolve, before)
            after = query.get("to")
            new = snapshot.commit if after is None else None
            if new is None:
                new = await run_in_threadpool(self.revisions.resolve, after or "")
        except RefNotFoundError as exc:
            return _error(404, "REF_NOT_FOUND", f"ref {_echo(exc.ref)!r}: {exc.reason}")
        try:
            diff = await run_in_threadpool(self.revisions.diff, record.path, old, new)
        except DiffTooLarge as exc:
            return _error(400, "DIFF_TOO_LARGE", str(exc))
        return _answer(200, {"id": record.id, **diff.to_json()})


def history_routes(server: _Server) -> list[Route]:
    """The history and diff routes over `server`'s store, keys and limiter."""
    endpoints = _HistoryEndpoints(server)
    return [
        Route("/api/v1/prompts/{id}/history", _AsgiEndpoint(endpoints.history), methods=["GET"]),
        Route("/api/v1/prompts/{id}/diff", _AsgiEndpoint(endpoints.diff), methods=["GET"]),
    ]


class _AsgiEndpoint:
    """A route endpoint that is a plain ASGI app (an instance, not a function, so that
    Starlette does not wrap it as a request handler)."""

    __slots__ = ("handler",)

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(scope, receive)
        await response(scope, receive, send)
