"""The one table of a prompt's fields, from which both sides derive what they do with them:
the wire order of a prompt's JSON (README, "The API"), the SDK's checks of an answer
(`Prompt.from_api`), the server's records and the front-matter keys it knows
(`server/records.py`, `server/files.py`), and the OpenAPI schema (`server/openapi.py`).

Adding a field is one edit here: a `Field` appended after ``updated_at`` (new keys come
last, so existing clients keep working) reaches the JSON, the SDK's checks, the front
matter and the schema; `Prompt` gets a typed attribute when one is declared for it, and
always has it in ``prompt.meta``. ``tests/sdk/test_fields.py`` shows it.

No I/O, and nothing of the SDK or the server is imported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ._protocol import ENVIRONMENTS

__all__ = [
    "PROMPT_FIELDS",
    "PROMPT_JSON_KEYS",
    "PROMPT_TYPES",
    "ROLES",
    "Field",
    "answer_problem",
    "front_matter_keys",
    "json_type",
    "json_schema_properties",
    "wire_value",
]

#: The kinds of prompt.
PROMPT_TYPES: tuple[str, ...] = ("chat", "completion", "tts", "transcription")
#: LLM message roles a prompt may declare.
ROLES: tuple[str, ...] = ("system", "user", "assistant")

Kind = Literal["str", "object", "bool", "str_list", "object_list"]

_JSON_TYPES: dict[str, str] = {
    "str": "string",
    "object": "object",
    "bool": "boolean",
    "str_list": "array",
    "object_list": "array",
}


@dataclass(frozen=True)
class Field:
    """One field of a prompt.

    Attributes:
        name: its key in the JSON and in the front matter.
        kind: ``str``, ``object`` (a JSON object), ``bool``, ``str_list`` or
            ``object_list`` (a list of JSON objects).
        nullable: whether the JSON may carry null for it.
        default: its value when the front matter (or an answer) leaves it out.
        required: an answer without it is malformed (``id``, ``name``, ``body``).
        source: ``front`` (read from the front matter as its kind says), ``special``
            (from the front matter by rules of its own: ids, names, versions...) or
            ``server`` (computed by the server: org, app, commit...).
        choices: the values it may take, if it is an enumeration.
        description: what it is, for the schema and the docs.
    """

    name: str
    kind: Kind
    nullable: bool = False
    default: Any = None
    required: bool = False
    source: Literal["front", "special", "server"] = "front"
    choices: tuple[str, ...] = ()
    description: str = ""


#: The fields in wire order: the order our server writes them and the existing server does.
PROMPT_FIELDS: tuple[Field, ...] = (
    Field("id", "str", required=True, source="special", description="The prompt's UUID."),
    Field("app_id", "str", default="", source="server", description="UUIDv5 of 'org/app'."),
    Field("name", "str", required=True, source="special", description="The prompt's name."),
    Field("version", "str", default="", source="special", description="Semantic version."),
    Field("org", "str", default="", source="server", description="Organization name."),
    Field("app", "str", default="", source="server", description="Application name."),
    Field("domain", "str", nullable=True, description="Domain category, e.g. 'meditation'."),
    Field("description", "str", nullable=True, description="Human-readable description."),
    Field("type", "str", default="", choices=PROMPT_TYPES, description="The kind of prompt."),
    Field(
        "role",
        "str",
        nullable=True,
        choices=ROLES,
        description="LLM message role: system, user or assistant.",
    ),
    Field("model", "object", default={}, description="Model configuration, as written."),
    Field("modality", "object", nullable=True, description="Input and output modalities."),
    Field("tts", "object", nullable=True, description="Text-to-speech settings."),
    Field("audio", "object", nullable=True, description="Audio generation settings."),
    Field(
        "environment",
        "str",
        default="",
        source="special",
        choices=ENVIRONMENTS,
        description="development, staging or production.",
    ),
    Field("active", "bool", default=True, description="Whether the prompt is served."),
    Field("tags", "str_list", default=(), description="Tags for filtering."),
    Field("body", "str", required=True, source="server", description="The Jinja2 template."),
    Field(
        "includes",
        "str_list",
        default=(),
        source="special",
        description="Names of the prompts this one includes (front matter and body).",
    ),
    Field(
        "git_sha",
        "str",
        nullable=True,
        source="server",
        description="The last commit that changed the file.",
    ),
    Field(
        "updated_at",
        "str",
        nullable=True,
        source="server",
        description="That commit's time (ISO 8601 on our server).",
    ),
    # New keys come after `updated_at` (CONTRACT, "Growing the protocol").
    Field(
        "inputs",
        "object",
        default={},
        description="Typed inputs by variable name: type, required, default, description, sample.",
    ),
    Field(
        "tools",
        "object_list",
        default=(),
        description="Function tools the model may call, as the OpenAI chat API takes them.",
    ),
    Field(
        "response_format",
        "object",
        nullable=True,
        description="The answer's shape: a JSON Schema, or an OpenAI response_format object.",
    ),
)

#: The keys of a prompt's JSON on the wire, in the order the server writes them.
PROMPT_JSON_KEYS: tuple[str, ...] = tuple(f.name for f in PROMPT_FIELDS)


def json_type(value: Any) -> str:
    """How messages name the JSON type of a decoded `value` (``a string``, ``null``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _fits(field: Field, value: Any) -> bool:
    if field.kind == "str":
        return isinstance(value, str)
    if field.kind == "object":
        return isinstance(value, dict)
    if field.kind == "bool":
        return isinstance(value, bool)
    if field.kind == "object_list":
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


_EXPECTED = {
    "str": "a string",
    "object": "an object",
    "bool": "a boolean",
    "str_list": "a list of strings",
    "object_list": "a list of objects",
}


def answer_problem(data: Mapping[str, Any], fields: Iterable[Field] = PROMPT_FIELDS) -> str | None:
    """What is wrong with a prompt's JSON object, or None. Missing optional fields and
    unknown keys are fine, and choices are not enforced: a newer server may add keys and
    values."""
    for field in fields:
        if field.name not in data:
            if field.required:
                return f"field {field.name!r} is missing, expected {_EXPECTED[field.kind]}"
            continue
        value = data[field.name]
        # null stands for "empty" in containers (some servers send it for an empty model
        # or tag list); for a string or a boolean it is only fine when the field is nullable.
        if value is None and (
            field.nullable or field.kind in ("object", "str_list", "object_list")
        ):
            continue
        if not _fits(field, value):
            expected = _EXPECTED[field.kind] + (" or null" if field.nullable else "")
            return f"field {field.name!r} is {json_type(value)}, expected {expected}"
    return None


def wire_value(field: Field, value: Any) -> Any:
    """`value` as the JSON carries it: tuples as lists, None as the default when the field
    is not nullable."""
    if value is None and not field.nullable:
        value = field.default
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict) and value is field.default:
        return {}
    return value


def json_schema_properties(fields: Iterable[Field] = PROMPT_FIELDS) -> dict[str, Any]:
    """The JSON Schema properties of a prompt's JSON, in wire order."""
    properties: dict[str, Any] = {}
    for field in fields:
        json_type = _JSON_TYPES[field.kind]
        schema: dict[str, Any] = {"type": [json_type, "null"] if field.nullable else json_type}
        if field.kind == "str_list":
            schema["items"] = {"type": "string"}
        if field.kind == "object_list":
            schema["items"] = {"type": "object"}
        if field.choices:
            schema["enum"] = [*field.choices, None] if field.nullable else list(field.choices)
        if field.description:
            schema["description"] = field.description
        properties[field.name] = schema
    return properties


def front_matter_keys(fields: Iterable[Field] = PROMPT_FIELDS) -> frozenset[str]:
    """The front-matter keys the fields read (every field not computed by the server)."""
    return frozenset(f.name for f in fields if f.source != "server")
