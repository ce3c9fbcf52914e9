"""Read-only dicts and lists for prompt data that the cache hands to many callers.

A cached `Prompt` is shared by every caller that asks for it, across threads. If one caller
could append to `prompt.tags` or set `prompt.model["temperature"]`, every other caller would see
it. Copying on every cache hit would cost more than the hit itself, so the data is frozen once,
when an answer is parsed, and handed out as is.

`FrozenDict` and `FrozenList` subclass `dict` and `list`, so `isinstance(prompt.model, dict)`,
`json.dumps(prompt.meta)` and every read work unchanged; only mutation raises `TypeError`.
`dict(prompt.model)`, `list(prompt.tags)`, `.copy()` and `copy.deepcopy(...)` give ordinary
mutable copies.
"""

from __future__ import annotations

import copy
from typing import Any, NoReturn, SupportsIndex

__all__ = ["FrozenDict", "FrozenList", "freeze"]

_HINT = "prompt data is shared through the cache and read-only; copy it first (dict(x), list(x))"


def _refuse(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__} cannot be changed: {_HINT}")


class FrozenDict(dict[str, Any]):
    """A `dict` that refuses every mutation."""

    __slots__ = ()

    __setitem__ = _refuse
    __delitem__ = _refuse
    __ior__ = _refuse
    clear = _refuse
    pop = _refuse
    popitem = _refuse
    setdefault = _refuse
    update = _refuse

    def copy(self) -> dict[str, Any]:
        """A shallow, mutable copy."""
        return dict(self)

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __repr__(self) -> str:
        return dict.__repr__(self)


class FrozenList(list[Any]):
    """A `list` that refuses every mutation."""

    __slots__ = ()

    __setitem__ = _refuse
    __delitem__ = _refuse
    __iadd__ = _refuse
    __imul__ = _refuse
    append = _refuse
    extend = _refuse
    insert = _refuse
    remove = _refuse
    clear = _refuse
    sort = _refuse
    reverse = _refuse

    def pop(self, index: SupportsIndex = -1) -> NoReturn:
        _refuse(self)

    def copy(self) -> list[Any]:
        """A shallow, mutable copy."""
        return list(self)

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return [copy.deepcopy(v, memo) for v in self]

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))

    def __repr__(self) -> str:
        return list.__repr__(self)


def freeze(value: Any) -> Any:
    """Return `value` with every dict and list inside it, at any depth, made read-only.

    JSON-shaped data only: dicts, lists and scalars. Tuples become `FrozenList` too, since a
    JSON array is a list. Already-frozen containers are returned as they are.
    """
    kind = type(value)
    if kind is dict:
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if kind is list or kind is tuple:
        return FrozenList(freeze(v) for v in value)
    return value
