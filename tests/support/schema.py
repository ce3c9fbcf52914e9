"""A small validator for the JSON Schema the server's OpenAPI document uses.

Covers `$ref`, `type` (one or a list), `enum`, `required`, `properties`,
`additionalProperties: false`, `items` and `minimum`: enough to check live answers against
the document without a schema library.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SchemaError", "validate"]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class SchemaError(AssertionError):
    """A value that does not match its schema; the message gives the JSON path."""


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _is(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[name])


def validate(document: dict[str, Any], schema: dict[str, Any], value: Any, path: str = "$") -> None:
    """Raise `SchemaError` unless `value` matches `schema` (refs resolved in `document`)."""
    schema = _resolve(document, schema)
    kinds = schema.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, name) for name in names):
            raise SchemaError(f"{path}: {value!r} is not of type {kinds}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{path}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        raise SchemaError(f"{path}: {value} is under {schema['minimum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                raise SchemaError(f"{path}: missing required key {key!r}")
        for key, item in value.items():
            if key in properties:
                validate(document, properties[key], item, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                raise SchemaError(f"{path}: unexpected key {key!r}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            validate(document, schema["items"], item, f"{path}[{index}]")
