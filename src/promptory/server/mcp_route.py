"""``/mcp``: the MCP server of `promptory.mcp_prompts` over streamable HTTP, inside
``promptory serve``, answering from the server's own store.

* The same key auth as the API: a request without a valid key gets the API's 401 (or 429
  past the rate limit) before MCP sees it; each MCP request lists and renders only what its
  key may read.
* Renders run on the render workers with the key's render cap, as the render endpoint's do.
* Stateless streamable HTTP, POST only, answered in JSON: no MCP session or stream outlives
  its request (a GET stream would hold a connection open for nothing: there is nothing to
  push), and a revoked key stops working at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from .._chat import ChatError
from ..exceptions import RenderError
from ..mcp_prompts import build_server
from ..prompt import Prompt
from .answers import ApiError
from .keys import KeyRecord
from .messages import rendered_answer, with_input_defaults
from .render import IncludeError, plan
from .renderpool import Busy

__all__ = ["McpMount", "StoreSource"]


class StoreSource:
    """The prompts `key` may read, from the served snapshot, rendered on the workers."""

    def __init__(self, server: Any, key: KeyRecord) -> None:
        self.server = server
        self.key = key

    async def prompts(self) -> list[Prompt]:
        """One prompt per ``org/app/name``: the variant the listing gives first."""
        key = self.key
        records = await run_in_threadpool(
            self.server.store.snapshot.prompts, allow=None if key.unscoped else key.allows
        )
        seen: dict[str, Prompt] = {}
        for record in records:
            if record.ready is not None and record.qualified_name not in seen:
                seen[record.qualified_name] = Prompt.from_api(record.ready.data)
        return list(seen.values())

    async def messages(self, prompt: Prompt, variables: dict[str, Any]) -> list[dict[str, Any]]:
        """The render endpoint's messages for `prompt`."""
        snapshot = self.server.store.snapshot
        record = snapshot.find_by_id(prompt.id)
        if record is None or not self.key.allows(record.org, record.app):
            raise RenderError(f"prompt {prompt.qualified_name} is no longer served")
        try:
            job = await run_in_threadpool(lambda: plan(snapshot, record).job(record.qualified_name))
        except IncludeError as exc:
            raise RenderError(exc.message) from exc
        variables = dict(with_input_defaults(prompt.meta, variables) or {})
        try:
            text = await self.server.renders.render(self.key.id, job, variables)
        except Busy as exc:
            raise RenderError(exc.message) from exc
        try:
            _, messages = rendered_answer(job, record.text.body, prompt.role, text, variables)
        except ChatError as exc:
            raise RenderError(str(exc)) from exc
        return messages


class McpMount:
    """The ASGI app mounted at ``/mcp``, with its session manager's lifespan."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self._build()

    def _build(self) -> None:
        # A session manager runs once: each run of the app (a lifespan) gets a new one.
        self.mcp = build_server(self._source)
        self.app = self.mcp.streamable_http_app(
            streamable_http_path="/mcp",
            stateless_http=True,
            json_response=True,
            # The API's own key check guards it; the API has no Host allow-list either.
            transport_security=None,
            host="0.0.0.0",
        )
        self._ran = False

    def _source(self, context: Any) -> StoreSource:
        request = getattr(context, "request", None)
        scope = getattr(request, "scope", None)
        key: KeyRecord | None = None
        if scope is not None:
            try:
                key, _ = self.server._authenticate(scope)
            except ApiError:
                key = None
        if key is None:
            raise RenderError("this MCP request carries no valid API key")
        return StoreSource(self.server, key)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run the MCP session manager (enter within the server's lifespan)."""
        if self._ran:
            self._build()
        self._ran = True
        async with self.mcp.session_manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                await self.server._admit(scope)
            except ApiError as exc:
                await exc.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
