"""The history routes of the API: a prompt's commits, and a diff between two of them.

``GET /api/v1/prompts/{id}/history?limit=N&ref=R`` and
``GET /api/v1/prompts/{id}/diff?from=A&to=B&ref=R``. Both take the key, rate limit, ref and
scope checks of the other prompt routes, in the same order (401, 429, 400, 404 for a ref,
then the prompt: 404 when absent or out of the key's scope, alike), and the same error
envelope: every refusal raises `ApiError`, answered by `answers.Endpoint`. The walking and
diffing run in the thread pool (see `revisions`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope

from .answers import ApiError, Endpoint, echo, unknown_id
from .keys import KeyRecord
from .records import PromptRecord, dump_json
from .revisions import DEFAULT_HISTORY, MAX_HISTORY, DiffTooLarge, parse_limit, shared_revisions
from .store import RefNotFoundError, Snapshot

if TYPE_CHECKING:
    from .app import _Server

__all__ = ["history_routes"]


def _answer(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dump_json(data), status, headers, media_type="application/json")


class _HistoryEndpoints:
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.revisions = shared_revisions(server, os.fspath(server.store.path), server.readable_sha)

    async def _prompt(
        self, scope: Scope, query: dict[str, str], key: KeyRecord
    ) -> tuple[Snapshot, PromptRecord]:
        """The snapshot and the prompt of the request, if `key` may read it.

        Raises:
            ApiError: the ref's errors (see `_Server._snapshot`); 404 for an id that names
                no prompt, or one outside the key's scope.
        """
        snapshot, _ = await self.server._snapshot(query)
        prompt_id: str = scope["path_params"]["id"]
        record = await run_in_threadpool(snapshot.find_by_id, prompt_id)
        if record is None or not key.allows(record.org, record.app):
            raise unknown_id(prompt_id)
        return snapshot, record

    async def history(self, scope: Scope, receive: Receive) -> Response:
        server = self.server
        key, _ = await server._admit(scope)
        query = server._query(scope)
        raw_limit = query.get("limit", str(DEFAULT_HISTORY))
        limit = parse_limit(raw_limit)
        if limit is None:
            raise ApiError(
                400,
                "INVALID_QUERY",
                f"limit {echo(raw_limit)!r} must be a whole number from 1 to {MAX_HISTORY}",
            )
        snapshot, record = await self._prompt(scope, query, key)
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
        key, _ = await server._admit(scope)
        query = server._query(scope)
        before = query.get("from")
        if before is None:
            raise ApiError(
                400, "INVALID_QUERY", "give the commits to compare: ?from=SHA_OR_TAG[&to=...]"
            )
        snapshot, record = await self._prompt(scope, query, key)
        try:
            old = await run_in_threadpool(self.revisions.resolve, before)
            after = query.get("to")
            new = snapshot.commit if after is None else None
            if new is None:
                new = await run_in_threadpool(self.revisions.resolve, after or "")
        except RefNotFoundError as exc:
            raise ApiError(404, "REF_NOT_FOUND", f"ref {echo(exc.ref)!r}: {exc.reason}") from None
        try:
            diff = await run_in_threadpool(self.revisions.diff, record.path, old, new)
        except DiffTooLarge as exc:
            raise ApiError(400, "DIFF_TOO_LARGE", str(exc)) from None
        return _answer(200, {"id": record.id, **diff.to_json()})


def history_routes(server: _Server) -> list[Route]:
    """The history and diff routes over `server`'s store, keys and limiter."""
    endpoints = _HistoryEndpoints(server)
    return [
        Route("/api/v1/prompts/{id}/history", Endpoint(endpoints.history), methods=["GET"]),
        Route("/api/v1/prompts/{id}/diff", Endpoint(endpoints.diff), methods=["GET"]),
    ]
