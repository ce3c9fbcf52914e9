"""A prompt as the keyword arguments of an OpenAI chat completions call (no I/O).

* ``model``: the front matter's ``model.name``, ``model.id`` or ``model.default`` (ours), or
  Prompty's ``model.configuration.name`` / ``model`` / ``azure_deployment``; left out when
  none is given (pass ``model=`` yourself).
* Sampling settings (`CHAT_PARAMETERS`): from ``model`` itself or from Prompty's
  ``model.parameters``, which win; other keys are not sent.
* ``tools``: each in OpenAI's ``{"type": "function", "function": {...}}`` shape, wrapping
  one written without it.
* ``response_format``: OpenAI's object as written, or a bare JSON Schema wrapped as
  ``{"type": "json_schema", "json_schema": {"name": <prompt name>, "schema": ...}}``.

Every value is a fresh plain ``dict``/``list``: the caller may change it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CHAT_PARAMETERS", "openai_kwargs", "plain"]

#: The model settings passed on to ``chat.completions.create``.
CHAT_PARAMETERS: tuple[str, ...] = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "n",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "parallel_tool_calls",
    "tool_choice",
    "reasoning_effort",
    "user",
)
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_-]")


def plain(value: Any) -> Any:
    """A deep copy of `value` made of plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain(item) for item in value]
    return value


def _model_name(model: Mapping[str, Any]) -> str | None:
    for key in ("name", "id", "default"):
        if isinstance(model.get(key), str):
            return str(model[key])
    configuration = model.get("configuration")
    if isinstance(configuration, Mapping):
        for key in ("name", "model", "azure_deployment"):
            if isinstance(configuration.get(key), str):
                return str(configuration[key])
    return None


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
        wrapped: dict[str, Any] = plain(tool)
        return wrapped
    return {"type": "function", "function": plain(tool)}


def _response_format(value: Mapping[str, Any], name: str) -> dict[str, Any]:
    if value.get("type") in ("text", "json_object", "json_schema"):
        written: dict[str, Any] = plain(value)
        return written
    schema_name = _NOT_A_NAME.sub("_", name)[:64] or "response"
    return {"type": "json_schema", "json_schema": {"name": schema_name, "schema": plain(value)}}


def openai_kwargs(
    *,
    name: str,
    model: Mapping[str, Any],
    tools: Sequence[Mapping[str, Any]],
    response_format: Mapping[str, Any] | None,
    messages: list[dict[str, Any]],
) -> dict[str, Any]:
    """The keyword arguments of ``client.chat.completions.create`` for a prompt."""
    kwargs: dict[str, Any] = {}
    model_name = _model_name(model)
    if model_name is not None:
        kwargs["model"] = model_name
    kwargs["messages"] = plain(messages)
    parameters = model.get("parameters")
    settings = {**model, **(parameters if isinstance(parameters, Mapping) else {})}
    for key in CHAT_PARAMETERS:
        if key in settings and settings[key] is not None:
            kwargs[key] = plain(settings[key])
    if tools:
        kwargs["tools"] = [_tool(tool) for tool in tools]
    if response_format:
        kwargs["response_format"] = _response_format(response_format, name)
    return kwargs
