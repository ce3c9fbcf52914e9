"""Checks of what a prompt declares beside its body: ``inputs``, ``tools`` and
``response_format`` (served as written once they pass).

* ``inputs``: as `promptory._inputs.parse_inputs` reads them.
* ``tools``: each a function tool as the OpenAI chat API takes it,
  ``{type: function, function: {name, description, parameters}}``, or the same without the
  wrapper (``{name, description, parameters}``). The name is 1 to 64 letters, digits, ``_``
  or ``-``, unique in the list; ``parameters`` is a valid JSON Schema (Draft 2020-12, checked
  with `jsonschema`).
* ``response_format``: OpenAI's object (``{type: text}``, ``{type: json_object}``, or
  ``{type: json_schema, json_schema: {name, schema, strict}}``), or a bare JSON Schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from .._inputs import InputsError, parse_inputs

__all__ = ["MAX_TOOLS", "check_declarations", "tool_function"]

#: Most tools a prompt may declare (OpenAI's own limit).
MAX_TOOLS = 128
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def tool_function(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    """The function part of a tool, with or without OpenAI's wrapper."""
    if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
        function: Mapping[str, Any] = tool["function"]
        return function
    return tool


def _schema_problem(schema: Any, where: str) -> str | None:
    if not isinstance(schema, Mapping) and not isinstance(schema, bool):
        return f"{where} must be a JSON Schema (a mapping)"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        at = "/".join(str(part) for part in exc.path)
        return f"{where} is not a valid JSON Schema{f' at {at}' if at else ''}: {exc.message}"
    return None


def _tool_problems(tools: tuple[dict[str, Any], ...]) -> list[str]:
    if len(tools) > MAX_TOOLS:
        return [f"declares {len(tools)} tools, over the limit of {MAX_TOOLS}"]
    problems: list[str] = []
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        kind = tool.get("type", "function")
        if kind != "function":
            problems.append(f"{where} has type {kind!r}; only function tools are supported")
            continue
        function = tool_function(tool)
        name = function.get("name")
        if not isinstance(name, str) or _TOOL_NAME.fullmatch(name) is None:
            problems.append(f"{where} needs a name of 1 to 64 letters, digits, '_' or '-'")
            continue
        if name in seen:
            problems.append(f"{where}: tool name {name!r} is declared twice")
        seen.add(name)
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            problems.append(f"{where} ({name}): description must be a string")
        if "parameters" in function:
            problem = _schema_problem(function["parameters"], f"{where} ({name}) parameters")
            if problem:
                problems.append(problem)
    return problems


def _response_format_problem(value: Mapping[str, Any]) -> str | None:
    kind = value.get("type")
    if kind in ("text", "json_object"):
        return None
    if kind == "json_schema" and isinstance(value.get("json_schema"), Mapping):
        inner = value["json_schema"]
        name = inner.get("name")
        if not isinstance(name, str) or _TOOL_NAME.fullmatch(name) is None:
            return "json_schema.name must be 1 to 64 letters, digits, '_' or '-'"
        return _schema_problem(inner.get("schema", {}), "json_schema.schema")
    return _schema_problem(value, "it")


def check_declarations(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(front-matter key, what is wrong)`` for each bad declaration (empty when all are
    fine), from the front matter's fields as read by kind."""
    problems: list[tuple[str, str]] = []
    try:
        parse_inputs(values.get("inputs"))
    except InputsError as exc:
        problems.append(("inputs", str(exc)))
    problems.extend(("tools", problem) for problem in _tool_problems(values.get("tools") or ()))
    response_format = values.get("response_format")
    if response_format is not None:
        problem = _response_format_problem(response_format)
        if problem:
            problems.append(("response_format", problem))
    return problems
