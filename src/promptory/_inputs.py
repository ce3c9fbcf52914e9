"""Typed inputs: the front matter's ``inputs:``, read, checked and applied to variables.

Rules of this module (no I/O; the SDK's renders and the server's index share it):

* ``inputs:`` maps each variable name to a mapping of ``type`` (``string``, ``number``,
  ``integer``, ``boolean``, ``object`` or ``array``; any value when left out), ``required``
  (false unless given), ``default``, ``description`` and ``sample``. A required input has no
  default, and a default (and a sample) has the input's type.
* A render fills every input the variables leave out with its default (`with_defaults`).
* A strict render checks the variables against the inputs (`input_problems`): a missing
  required input, or a value of the wrong type, each named. ``integer`` takes no boolean and
  no float; ``number`` takes integers and floats but no boolean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INPUT_TYPES",
    "MAX_INPUTS",
    "InputSpec",
    "InputsError",
    "input_problems",
    "parse_inputs",
    "type_matches",
    "with_defaults",
]

#: The types an input may declare.
INPUT_TYPES: tuple[str, ...] = ("string", "number", "integer", "boolean", "object", "array")
#: Most inputs a prompt may declare.
MAX_INPUTS = 500
_SPEC_KEYS = frozenset({"type", "required", "default", "description", "sample"})


class InputsError(ValueError):
    """An ``inputs:`` declaration that cannot be used; the message names the input."""


@dataclass(frozen=True)
class InputSpec:
    """One declared input.

    Attributes:
        name: the variable's name.
        type: one of `INPUT_TYPES`, or None for any value.
        required: a strict render refuses variables without it.
        has_default: whether `default` was given (a default may be null).
        default: the value a render uses when the variables lack it.
        description: what it is, for people and for MCP clients.
        sample: an example value.
    """

    name: str
    type: str | None = None
    required: bool = False
    has_default: bool = False
    default: Any = None
    description: str | None = None
    sample: Any = None


def type_matches(type_name: str | None, value: Any) -> bool:
    """Whether `value` has the input type `type_name` (None takes anything)."""
    if type_name is None:
        return True
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "boolean":
        return isinstance(value, bool)
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_name == "object":
        return isinstance(value, Mapping)
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def parse_inputs(inputs: Mapping[str, Any] | None) -> tuple[InputSpec, ...]:
    """The declared inputs, in order.

    Raises:
        InputsError: a declaration that is not a mapping, an unknown key or type, a required
            input with a default, or a default or sample of the wrong type; the message
            names the input.
    """
    if not inputs:
        return ()
    if len(inputs) > MAX_INPUTS:
        raise InputsError(f"declares {len(inputs)} inputs, over the limit of {MAX_INPUTS}")
    specs = []
    for name, spec in inputs.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise InputsError(f"input {name!r} is not a variable name")
        if not isinstance(spec, Mapping):
            raise InputsError(
                f"input {name!r} must be a mapping (type, required, default, description, "
                f"sample), not {type(spec).__name__}"
            )
        unknown = sorted(str(key) for key in spec if key not in _SPEC_KEYS)
        if unknown:
            raise InputsError(
                f"input {name!r} has unknown key(s) {', '.join(unknown)}; expected "
                f"{', '.join(sorted(_SPEC_KEYS))}"
            )
        type_name = spec.get("type")
        if type_name is not None and type_name not in INPUT_TYPES:
            raise InputsError(
                f"input {name!r} has type {type_name!r}; expected one of {', '.join(INPUT_TYPES)}"
            )
        required = spec.get("required", False)
        if not isinstance(required, bool):
            raise InputsError(f"input {name!r}: 'required' must be true or false")
        description = spec.get("description")
        if description is not None and not isinstance(description, str):
            raise InputsError(f"input {name!r}: 'description' must be a string")
        has_default = "default" in spec
        if required and has_default:
            raise InputsError(f"input {name!r} is required and has a default; drop one of them")
        for key in ("default", "sample"):
            value = spec.get(key)
            if key in spec and value is not None and not type_matches(type_name, value):
                raise InputsError(f"input {name!r}: its {key} is not of type {type_name}")
        specs.append(
            InputSpec(
                name=name,
                type=type_name,
                required=required,
                has_default=has_default,
                default=spec.get("default"),
                description=description,
                sample=spec.get("sample"),
            )
        )
    return tuple(specs)


def with_defaults(
    specs: Sequence[InputSpec], variables: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """`variables` with each input it lacks set to its default (the same mapping when
    nothing is added)."""
    missing = [spec for spec in specs if spec.has_default and spec.name not in (variables or {})]
    if not missing:
        return variables
    filled = dict(variables or {})
    for spec in missing:
        filled[spec.name] = spec.default
    return filled


def input_problems(
    specs: Sequence[InputSpec], variables: Mapping[str, Any] | None
) -> tuple[list[str], dict[str, str]]:
    """``(missing required inputs, {name: what is wrong with its value})``, in input order."""
    given = variables or {}
    missing: list[str] = []
    wrong: dict[str, str] = {}
    for spec in specs:
        if spec.name not in given:
            if spec.required:
                missing.append(spec.name)
            continue
        value = given[spec.name]
        if not type_matches(spec.type, value):
            wrong[spec.name] = f"expected {spec.type}, got {_kind(value)}"
    return missing, wrong


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return "array"
    return type(value).__name__
