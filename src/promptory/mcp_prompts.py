"""Prompts over the Model Context Protocol, built on the official `mcp` SDK (extra ``mcp``).

One MCP server logic, two backings:

* `ClientSource`: a `PromptClient` (``promptory mcp --base-url URL --api-key KEY``, over
  stdio), so prompts come from its cache and keep being served through an outage;
* the server's own store, for ``promptory serve`` at ``/mcp`` (`promptory.server.mcp_route`).

Rules:

* ``prompts/list`` gives every prompt the key may read, named ``org/app/name`` (the
  environment the key's listing gives first), with its arguments: the declared ``inputs``
  (description, required), else the variables the body reads (required when read without a
  guard), plus the history loop's list when the body has one.
* ``prompts/get`` renders the prompt with the arguments and answers its messages. MCP
  arguments are strings: an input declared ``string`` (or undeclared) takes the text as is,
  any other type (and the history list) takes JSON text. MCP messages have only the roles
  ``user`` and ``assistant``: a ``system`` (or ``developer``) message is sent as ``user``,
  and ``tool`` messages are left out.
* Errors a caller can fix (unknown prompt, bad argument, a template that fails) are MCP
  ``INVALID_PARAMS`` errors whose message says what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio.to_thread
from mcp import types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from ._version import __version__
from .client import PromptClient
from .exceptions import PromptoryError
from .prompt import Prompt

__all__ = [
    "ClientSource",
    "PromptSource",
    "build_server",
    "message_payload",
    "prompt_arguments",
    "run_stdio",
    "variables_from_arguments",
]


class PromptSource(Protocol):
    """Where the MCP server's prompts come from, for one caller."""

    async def prompts(self) -> list[Prompt]:
        """The prompts the caller may read (one per ``org/app/name``)."""
        ...

    async def messages(self, prompt: Prompt, variables: dict[str, Any]) -> list[dict[str, Any]]:
        """`prompt` rendered with `variables`, as chat messages."""
        ...


def _history_name(prompt: Prompt) -> str | None:
    try:
        parts = prompt.message_templates()
    except PromptoryError:
        return None
    return next((part.history for part, _ in parts if part.history), None)


def prompt_arguments(prompt: Prompt) -> list[types.PromptArgument]:
    """The MCP arguments of `prompt`: its inputs, else the variables its body reads."""
    arguments: list[types.PromptArgument] = []
    try:
        specs = prompt.input_specs()
    except PromptoryError:
        specs = ()
    history = _history_name(prompt)
    if specs:
        for spec in specs:
            description = spec.description or ""
            if spec.type not in (None, "string"):
                description = f"{description} (JSON {spec.type})".strip()
            arguments.append(
                types.PromptArgument(
                    name=spec.name, description=description or None, required=spec.required
                )
            )
    else:
        try:
            info = prompt.compiled().info
        except PromptoryError:
            return []
        for name in info.variables:
            if name != history:
                arguments.append(types.PromptArgument(name=name, required=name in info.required))
    if history and all(argument.name != history for argument in arguments):
        arguments.append(
            types.PromptArgument(
                name=history,
                description="Earlier messages, as a JSON list of {role, content}",
                required=False,
            )
        )
    return arguments


def variables_from_arguments(prompt: Prompt, arguments: Mapping[str, str] | None) -> dict[str, Any]:
    """The render variables for MCP `arguments` (strings), JSON-decoded where the input's
    type (or the history list) asks for it.

    Raises:
        ValueError: an argument that should be JSON is not.
    """
    types_by_name = {spec.name: spec.type for spec in prompt.input_specs()}
    history = _history_name(prompt)
    variables: dict[str, Any] = {}
    for name, text in (arguments or {}).items():
        wanted = "array" if name == history else types_by_name.get(name)
        if wanted in (None, "string"):
            variables[name] = text
            continue
        try:
            variables[name] = json.loads(text)
        except ValueError:
            raise ValueError(
                f"argument {name!r} must be JSON ({wanted}), got {text[:80]!r}"
            ) from None
    return variables


def message_payload(messages: list[dict[str, Any]]) -> list[types.PromptMessage]:
    """Chat messages as MCP prompt messages (roles mapped as the module says)."""
    result = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            continue
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        result.append(
            types.PromptMessage(
                role="assistant" if role == "assistant" else "user",
                content=types.TextContent(type="text", text=text),
            )
        )
    return result


def _invalid(message: str) -> MCPError:
    return MCPError(types.INVALID_PARAMS, message)


def build_server(source_for: Callable[[Any], PromptSource]) -> Server[Any]:
    """An MCP server answering ``prompts/list`` and ``prompts/get`` from the source
    `source_for(context)` gives for each request's context (for HTTP, by the request's key)."""

    async def list_prompts(
        context: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        source = source_for(context)
        listed = []
        for prompt in await source.prompts():
            listed.append(
                types.Prompt(
                    name=prompt.qualified_name,
                    description=prompt.description,
                    arguments=prompt_arguments(prompt),
                )
            )
        return types.ListPromptsResult(prompts=listed)

    async def get_prompt(
        context: Any, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        source = source_for(context)
        found = {p.qualified_name: p for p in await source.prompts()}.get(params.name)
        if found is None:
            raise _invalid(f"no prompt {params.name!r}; prompts/list names those this key reads")
        try:
            variables = variables_from_arguments(found, params.arguments)
            messages = await source.messages(found, variables)
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        except PromptoryError as exc:
            raise _invalid(str(exc)) from None
        return types.GetPromptResult(
            description=found.description, messages=message_payload(messages)
        )

    return Server(
        "promptory",
        version=__version__,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )


class ClientSource:
    """Prompts from a `PromptClient`: listed by the server, fetched through the client's
    cache (served stale, or from its snapshot, through an outage)."""

    def __init__(self, client: PromptClient) -> None:
        self.client = client
        self._listed: list[Prompt] = []

    async def prompts(self) -> list[Prompt]:
        """The key's prompts, one per ``org/app/name``; the last listing through an outage."""
        try:
            listed = await anyio.to_thread.run_sync(self.client.list_prompts)
        except PromptoryError:
            if not self._listed:
                raise
            return self._listed
        seen: dict[str, Prompt] = {}
        for prompt in listed:
            seen.setdefault(prompt.qualified_name, prompt)
        self._listed = list(seen.values())
        return self._listed

    async def messages(self, prompt: Prompt, variables: dict[str, Any]) -> list[dict[str, Any]]:
        """Rendered from the client's cached copy (refreshed as its cache rules say); a
        prompt with includes is rendered by the server, as one message."""

        def render() -> list[dict[str, Any]]:
            current = self.client.get(prompt.id)
            if not current.needs_server_render():
                return current.to_messages(variables)
            text = self.client.render(current.id, variables)
            return [{"role": current.role or "system", "content": text}]

        return await anyio.to_thread.run_sync(render)


async def run_stdio(client: PromptClient) -> None:
    """Serve `client`'s prompts over stdio until stdin closes."""
    from mcp.server.stdio import stdio_server

    source = ClientSource(client)
    server = build_server(lambda context: source)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
