"""The one Jinja2 sandbox every promptory render goes through.

`Prompt.render()`, the clients' local renders and the server's render endpoint all use the
environment built here, so the same body and variables give the same string everywhere.

Settings (the same on both sides): `ImmutableSandboxedEnvironment` (a `SandboxedEnvironment`
that also refuses to mutate lists and dicts passed in), autoescape off, trailing newline kept,
the default `Undefined` (a missing variable renders as nothing and is false in `{% if %}`).

Prompt bodies come from a repository many people write to and are rendered on servers, so a
body is hostile input. The sandbox already refuses `__class__`, `__globals__` and the like (and
`|attr("format")` goes through the same lookup, whichever Jinja2 is installed: CVE-2025-27516);
on top of it every render runs under a budget (`RenderLimits`):

* a time limit, checked on every loop iteration and on every filter, test, macro, global and
  method call, so nested loops or deep recursion end within it;
* a limit on the work of one call: a filter, test or method call is charged for the input
  it walks (one per character or item) before it runs, and refused past `max_items` items or
  `max_output` characters, so no single call runs long past the deadline;
* an output limit on every join the template makes (its output, macros, `{% set %}` blocks);
* a limit on the data that guarded operations create and calls walk, in all, so
  `'x' * 10**9`, `10 ** 10 ** 10`, doubling a string in a loop or nesting shared lists cannot
  exhaust memory before the output limit is reached;
* limits on the arguments that size a result (`center(10**9)`, `"%9999999d"|format(1)`,
  `'x'.ljust(10**9)`, `lipsum(10**9)`, `batch(10**9, 'x')`).

The guards are put into the template's syntax tree before it is compiled (loops iterate
through `promptory:iter`, `~` goes through `promptory:concat`, list and dict literals through
`promptory:weigh`); those names cannot be written in a template. Every filter and test is
wrapped once, when the environment is built; calls go through `PromptEnvironment.call`.

Compilation happens once per body (`compile_body` keeps the latest ones), never per render. A
body that Jinja reads but Python cannot compile (25 nested `{% for %}`, 300 nested
parentheses) is a `RenderError`, like a syntax error.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from inspect import getattr_static
from types import CodeType, TracebackType
from typing import Any, NoReturn

from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    Template,
    Undefined,
    meta,
    nodes,
    pass_environment,
)
from jinja2.exceptions import (
    SecurityError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

from ._frozen import FrozenDict
from .exceptions import RenderError, UndefinedVariableError

__all__ = [
    "COMPILED_MAX_CHARS",
    "COMPILED_MAX_ENTRIES",
    "DEFAULT_LIMITS",
    "CompiledCache",
    "CompiledTemplate",
    "PromptEnvironment",
    "RenderLimits",
    "compile_body",
    "render_template",
]


@dataclass(frozen=True)
class RenderLimits:
    """Bounds on one render.

    Attributes:
        max_output: characters the rendered text (and any one string it builds) may hold;
            also the most characters one filter, test or method call may walk.
        max_seconds: wall-clock seconds one render may take.
        max_allocated: characters or items the template may build and walk in one render,
            in all: what its guarded operations create, and the input every filter, test
            and method call walks.
        max_width: the largest width, count or repeat argument a filter or string method
            accepts.
        max_items: the most items (of a list, a dict, any iterable) one filter, test or
            method call may walk; text that a filter handles word by word in Python
            (`urlize`, `wordwrap`) counts a character as an item.
    """

    max_output: int = 1_000_000
    max_seconds: float = 0.5
    max_allocated: int = 8_000_000
    max_width: int = 100_000
    max_items: int = 100_000


DEFAULT_LIMITS = RenderLimits()


class RenderLimitExceeded(SecurityError):
    """A template went past one of the render limits."""


class TemplateTooComplex(TemplateSyntaxError):
    """A template Jinja reads but that cannot be compiled: 25 nested `{% for %}` blocks
    (Python allows 20), 300 nested parentheses, an expression that exhausts the stack.

    `PromptEnvironment` raises it in place of Python's `SyntaxError`, `RecursionError` or
    `MemoryError` (and their thousands of frames), so whatever handles a syntax error,
    wherever a template is compiled, handles it too."""


def _too_complex(exc: Exception) -> TemplateTooComplex:
    if isinstance(exc, SyntaxError):  # Python's own limits, IndentationError included
        why = f"too deeply nested to compile ({exc.msg})"
    elif isinstance(exc, RecursionError):
        why = "too deeply nested to compile"
    elif isinstance(exc, MemoryError):
        why = "too large to compile"
    else:
        why = f"could not be compiled ({type(exc).__name__}: {str(exc)[:200]})"
    return TemplateTooComplex(f"template {why}; flatten it or split it into smaller prompts", 1)


# The clock every deadline check reads, bound once: the checks run on every loop iteration
# and every call a template makes.
_monotonic = time.monotonic


class _Budget:
    """What one render may still spend. One per render, held in a context variable."""

    __slots__ = ("allocated", "deadline", "limits")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = _monotonic() + limits.max_seconds
        self.allocated = 0

    def tick(self) -> None:
        if _monotonic() > self.deadline:
            self.expired()

    def expired(self) -> NoReturn:
        raise RenderLimitExceeded(
            f"render took longer than {self.limits.max_seconds:g} s and was stopped"
        )

    def charge(self, size: int) -> None:
        """Count `size` characters or items that one operation is about to build."""
        self.built(size)
        self.tick()

    def built(self, size: int) -> None:
        """Count `size` characters or items built by one operation."""
        if size > self.limits.max_output:
            raise RenderLimitExceeded(
                f"an expression would build {size:,} characters or items, over the "
                f"limit of {self.limits.max_output:,}"
            )
        self.spend(size)

    def walk(self, count: int, noun: str, cap: int, what: str) -> None:
        """Count `count` characters or items (`noun`) that one call (`what`) walks, at
        most `cap` of them."""
        if count > cap:
            raise RenderLimitExceeded(
                f"{what} was given {count:,} {noun}, over the limit of {cap:,} per call"
            )
        self.spend(count)

    def spend(self, size: int) -> None:
        self.allocated += size
        if self.allocated > self.limits.max_allocated:
            raise RenderLimitExceeded(
                f"the template built or walked more than {self.limits.max_allocated:,} "
                "characters or items in all"
            )


_BUDGET: ContextVar[_Budget | None] = ContextVar("promptory_render_budget", default=None)


def _budget() -> _Budget:
    # Outside a render (Jinja folds constant expressions while compiling) the per-operation
    # caps still apply, with a budget of its own.
    budget = _BUDGET.get()
    return budget if budget is not None else _Budget(DEFAULT_LIMITS)


# --- sizing values ---------------------------------------------------------------------------


_TEXT = frozenset({str})
_SCALARS = frozenset({int, float, bool, type(None)})


def _weight(value: Any, limit: int) -> int:
    """How many characters or items `value` expands to, counting shared references every
    time they occur (that is what `str()` of it would write). Stops counting past `limit`,
    so measuring a huge value costs no more than `limit` steps."""
    kind = type(value)
    if kind is str:
        return len(value)
    if kind is list or kind is tuple:
        # The common flat lists are measured at C speed: a list doubled in a loop must not
        # cost a Python step per item at every doubling.
        if len(value) > limit:
            return len(value) + 1
        kinds = set(map(type, value))
        if kinds <= _TEXT:
            return len(value) + 1 + sum(map(len, value))
        if kinds <= _SCALARS:
            return len(value) + 1
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += len(item) + 1
            if total <= limit:
                stack.extend(item)
        elif isinstance(item, dict):
            total += 2 * len(item) + 1
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        else:
            total += 1
        if total > limit:
            return total
    return total


def _check_width(name: str, value: Any, limits: RenderLimits) -> None:
    if isinstance(value, int) and abs(value) > limits.max_width:
        raise RenderLimitExceeded(f"{name} of {value:,} is over the limit of {limits.max_width:,}")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*\}")


_FORMATS_PASSED: dict[tuple[str, bool, int], bool] = {}


def _check_format_string(fmt: str, limits: RenderLimits, *, braces: bool) -> None:
    """Refuse format strings whose width or precision would build a huge string.

    A format string that passed is remembered (a template uses the same few again and
    again), up to a bound."""
    memo = (fmt, braces, limits.max_width)
    if memo in _FORMATS_PASSED:
        return
    _scan_format_string(fmt, limits, braces=braces)
    if len(_FORMATS_PASSED) < 4096 and len(fmt) < 512:
        _FORMATS_PASSED[memo] = True


def _scan_format_string(fmt: str, limits: RenderLimits, *, braces: bool) -> None:
    widths: list[str] = []
    if braces:
        for field in _BRACE_SPEC.findall(fmt):
            _, _, spec = field[1:-1].partition(":")
            widths.extend(re.findall(r"\d+", spec))
        if re.search(r"\{[^{}]*:[^{}]*\{", fmt):
            raise RenderLimitExceeded("format specs may not take their width from an argument")
    else:
        for width, precision in _PERCENT_SPEC.findall(fmt):
            if "*" in (width, precision):
                raise RenderLimitExceeded("'%*' widths taken from an argument are not allowed")
            widths.extend(w for w in (width, precision) if w)
    total = len(fmt)
    for width in widths:
        if len(width) > 9 or int(width) > limits.max_width:
            raise RenderLimitExceeded(
                f"a format width of {width} is over the limit of {limits.max_width:,}"
            )
        total += int(width)
    if total > limits.max_output:  # many fields, each padded: the sum is what gets built
        raise RenderLimitExceeded(
            f"the format string's fields would build {total:,} characters, over the limit "
            f"of {limits.max_output:,}"
        )


# --- guarded filters and globals -------------------------------------------------------------


def _guard_iter(value: Any) -> Any:
    return _guarded_iteration(iter(value), _budget())


def _guarded_iteration(iterator: Iterable[Any], budget: _Budget) -> Any:
    # The clock is read on every item: one iteration's body may be a whole filter call
    # (`{% for a in x %}{% set _ = l | sort %}{% endfor %}`), so looking only every few
    # items would let a few expensive bodies run past the deadline.
    deadline = budget.deadline
    for item in iterator:
        if _monotonic() > deadline:
            budget.expired()
        yield item


def _guard_concat(values: list[Any]) -> str:
    budget = _budget()
    parts = [str(v) for v in values]
    budget.charge(sum(map(len, parts)))
    return "".join(parts)


def _guard_weigh(value: Any) -> Any:
    budget = _budget()
    budget.charge(_weight(value, budget.limits.max_output))
    return value


#: Container types whose size `len()` gives without running template code.
_SIZED = frozenset({list, tuple, dict, FrozenDict, set, frozenset, range})


def _walk_input(value: Any, budget: _Budget, what: str, text_cap: int) -> Any:
    """Charge what a call will walk of `value`, before it runs.

    A sized value is charged by its length, and refused over the per-call cap (`text_cap`
    characters of text, `max_items` items otherwise). An iterator's length is not known in
    advance: it comes back wrapped, charged item by item, capped, and with the deadline
    checked on every item. Returns the value to pass on."""
    kind = type(value)
    if kind is str:
        budget.walk(len(value), "characters", text_cap, what)
    elif kind in _SIZED:
        budget.walk(len(value), "items", budget.limits.max_items, what)
    elif kind in _SCALARS or isinstance(value, Undefined):
        pass  # a number walks nothing; an undefined value is left to the call (strict raises)
    elif isinstance(value, str):
        budget.walk(len(value), "characters", text_cap, what)
    elif hasattr(kind, "__next__"):
        return _walked_iteration(value, budget, what)
    elif hasattr(kind, "__len__"):
        budget.walk(len(value), "items", budget.limits.max_items, what)
    return value


def _walked_iteration(iterator: Iterator[Any], budget: _Budget, what: str) -> Any:
    cap = budget.limits.max_items
    deadline = budget.deadline
    for count, item in enumerate(iterator, start=1):
        if count > cap:
            raise RenderLimitExceeded(
                f"{what} was given more than {cap:,} items, the limit per call"
            )
        budget.spend(1)
        if _monotonic() > deadline:
            budget.expired()
        yield item


_Check = Callable[[_Budget, tuple[Any, ...], dict[str, Any]], None]


def _guard_call(
    kind: str,
    name: str,
    original: Callable[..., Any],
    *,
    check: _Check | None = None,
    walks: int | None = None,
    word_by_word: bool = False,
) -> Callable[..., Any]:
    """`original` (a filter or a test) with the render budget applied to every call.

    Every call checks the deadline. A call that walks its input (argument `walks`: 0 for
    the filtered value, 1 for a test's second operand) is charged for it first (see
    `_walk_input`). `check` sees the arguments before the call, and the result of a checked
    call is sized after it; what an unchecked call returns is a small multiple of what it
    walked at most.

    Filters marked `pass_context`, `pass_eval_context` or `pass_environment` get that object
    first: the wrapper keeps the mark and shows `check` only the filter's own arguments."""
    pass_arg = getattr(original, "jinja_pass_arg", None)
    offset = 0 if pass_arg is None else 1
    what = f"{kind} {name!r}"

    position = offset + (walks or 0)

    def charge_input(budget: _Budget, args: tuple[Any, ...]) -> tuple[Any, ...]:
        value = args[position]
        cap = budget.limits.max_items if word_by_word else budget.limits.max_output
        walked = _walk_input(value, budget, what, cap)
        if walked is value:
            return args
        return (*args[:position], walked, *args[position + 1 :])

    if walks is None and check is None:

        def guarded(*args: Any, **kwargs: Any) -> Any:
            budget = _BUDGET.get()
            if budget is not None and _monotonic() > budget.deadline:
                budget.expired()
            return original(*args, **kwargs)

    elif check is None:

        def guarded(*args: Any, **kwargs: Any) -> Any:
            budget = _BUDGET.get() or _budget()
            if _monotonic() > budget.deadline:
                budget.expired()
            if len(args) > position:
                value = args[position]
                limits = budget.limits
                if type(value) is str and len(value) <= limits.max_output and not word_by_word:
                    budget.allocated += len(value)  # the common case, without a call
                    if budget.allocated > limits.max_allocated:
                        budget.spend(0)  # raises, naming the limit
                else:
                    args = charge_input(budget, args)
            # What it returns is a small multiple at most of what it walked (charged).
            return original(*args, **kwargs)

    else:

        def guarded(*args: Any, **kwargs: Any) -> Any:
            budget = _BUDGET.get() or _budget()
            if _monotonic() > budget.deadline:
                budget.expired()
            if walks is not None and len(args) > position:
                args = charge_input(budget, args)
            assert check is not None
            check(budget, args[offset:], kwargs)
            result = original(*args, **kwargs)
            if isinstance(result, (str, list)):
                budget.charge(_weight(result, budget.limits.max_output))
            return result

    guarded.__name__ = getattr(original, "__name__", kind)
    guarded.__doc__ = original.__doc__
    if pass_arg is not None:
        guarded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return guarded


def _widths(*names: str) -> _Check:
    """A check that the value-sizing arguments (positions 1.. or by name) are small."""

    def check(budget: _Budget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        for index, name in enumerate(names, start=1):
            value = args[index] if len(args) > index else kwargs.get(name)
            _check_width(name, value, budget.limits)

    return check


def _check_format_filter(budget: _Budget, args: tuple[Any, ...], _: dict[str, Any]) -> None:
    if args and isinstance(args[0], str):
        _check_format_string(args[0], budget.limits, braces=False)


def _check_indent(budget: _Budget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = args[1] if len(args) > 1 else kwargs.get("width", 4)
    _check_width("width", width, budget.limits)
    if args and isinstance(args[0], str):
        pad = width if isinstance(width, int) else len(str(width))
        budget.charge(len(args[0]) + (args[0].count("\n") + 1) * pad)


_WORDWRAP_MAX_TEXT = 100_000  # textwrap's cost grows faster than its input


def _check_wordwrap(budget: _Budget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = args[1] if len(args) > 1 else kwargs.get("width", 79)
    _check_width("width", width, budget.limits)
    if args and isinstance(args[0], str) and len(args[0]) > _WORDWRAP_MAX_TEXT:
        raise RenderLimitExceeded(
            f"wordwrap of {len(args[0]):,} characters is over the limit of {_WORDWRAP_MAX_TEXT:,}"
        )


def _check_replace(budget: _Budget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if len(args) >= 3 and isinstance(args[0], str):
        text, old, new = str(args[0]), str(args[1]), str(args[2])
        count = text.count(old) if old else len(text) + 1
        if count * len(new) + len(text) > budget.limits.max_output:
            raise RenderLimitExceeded("replace would build a string over the output limit")


def _check_join(budget: _Budget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if not args:
        return
    items = args[0]
    if isinstance(items, (list, tuple)):
        separator = args[1] if len(args) > 1 else kwargs.get("d", "")
        size = _weight(items, budget.limits.max_output)
        size += len(items) * len(str(separator))
        budget.charge(size)


def _check_sum(budget: _Budget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    start = args[2] if len(args) > 2 else kwargs.get("start", 0)
    if not isinstance(start, (int, float)):
        raise RenderLimitExceeded("sum() may only add numbers")


def _safe_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    limits = _budget().limits
    for name, value in (("n", n), ("min", min), ("max", max)):
        if not isinstance(value, int) or value > 1000:
            raise RenderLimitExceeded(f"lipsum {name}={value!r} is over the limit of 1000")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)[: limits.max_output]


def _make_concat(max_output: int) -> Callable[[Iterable[str]], str]:
    """`Environment.concat` with the output limit: every join a template makes (its whole
    output, macros, `{% set %}` and `{% filter %}` blocks) is held to `max_output`.

    A long list of chunks is sized before it is joined: a loop can repeat one big string
    many times, and the join would build all of it. A short list is bounded by what made its
    chunks (each guarded operation is held to the limit), so it is joined and then checked,
    which keeps a plain template's render as cheap as Jinja's own.
    """

    def concat(chunks: Iterable[str]) -> str:
        if type(chunks) is not list:
            chunks = list(chunks)
        if len(chunks) > 64:
            size = sum(map(len, chunks))
        else:
            text = "".join(chunks)
            size = len(text)
            if size <= max_output:
                return text
        if size > max_output:
            raise RenderLimitExceeded(
                f"the rendered text would be {size:,} characters, over the limit of {max_output:,}"
            )
        return "".join(chunks)

    return concat


# --- the syntax-tree guard -------------------------------------------------------------------

GUARD_ITER = "promptory:iter"
GUARD_CONCAT = "promptory:concat"
GUARD_WEIGH = "promptory:weigh"


class _Guard(NodeTransformer):
    """Rewrites a parsed template so loops, `~` and container literals run through guards."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        assert isinstance(node.iter, nodes.Expr)
        node.iter = _filter(node.iter, GUARD_ITER)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter(nodes.List(list(node.nodes), lineno=node.lineno), GUARD_CONCAT)

    def _weigh(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load":
            return node  # an assignment target such as `{% for a, b in x %}`
        return _filter(node, GUARD_WEIGH)

    visit_List = _weigh
    visit_Tuple = _weigh
    visit_Dict = _weigh


def _filter(node: nodes.Expr, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


# --- the environment -------------------------------------------------------------------------

_SIZING_FILTERS: dict[str, _Check] = {
    "center": _widths("width"),
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "truncate": _widths("length", "killwords", "end", "leeway"),
    "batch": _widths("linecount"),
    "slice": _widths("slices"),
    "format": _check_format_filter,
    "replace": _check_replace,
    "join": _check_join,
    "sum": _check_sum,
}

#: Builtin filters whose work does not grow with their input: they look at its length, one
#: item or a number, or their work is bounded by a checked argument (`truncate`). A deadline
#: check is all they need. Every other filter, a builtin added by a later Jinja2 included,
#: is charged for the input it walks.
CONSTANT_FILTERS = frozenset(
    {
        "abs",
        "attr",
        "count",
        "d",
        "default",
        "filesizeformat",
        "first",
        "last",
        "length",
        "random",
        "round",
        "truncate",
    }
)
#: Filters that handle text word by word in Python: there a character costs what an item
#: does, so they take at most `max_items` characters per call.
_WORD_BY_WORD_FILTERS = frozenset({"urlize", "wordwrap"})
#: Tests that walk an operand, by its position (0 is the tested value): `x is in seq`.
_WALKING_TESTS = {"in": 1}
#: Methods of str, list and dict whose work does not grow with the object they belong to;
#: every other method call on one of those is charged for the object's size.
_CONSTANT_METHODS = frozenset({"get", "items", "keys", "values", "startswith", "endswith"})


@pass_environment
def _attr(environment: Environment, obj: Any, name: str) -> Any:
    """The `attr` filter, through the environment's own attribute lookup.

    Jinja2 before 3.1.6 read the attribute with a plain `getattr`, which handed a template
    the raw `str.format` and let it read any object's globals (CVE-2025-27516). This is
    3.1.6's version, kept here so the sandbox holds whichever Jinja2 is installed."""
    try:
        getattr_static(obj, name)
    except AttributeError:
        # A dynamic attribute (`__getattr__`); there is no descriptor to run.
        if not hasattr(obj, name):
            return environment.undefined(obj=obj, name=name)
    return environment.getattr(obj, name)


_BUILTIN_METHOD = type("".format)
_DICT_ATTRIBUTES = frozenset(dir(dict)) | frozenset(dir(FrozenDict))
_STR_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_INT_BITS_LIMIT = 100_000


class PromptEnvironment(ImmutableSandboxedEnvironment):
    """The sandboxed Jinja2 environment for prompt bodies, with promptory's render limits.

    Both the SDK and the server build theirs from this class, so they agree on every setting.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(
        self,
        *,
        undefined: type[Undefined] = Undefined,
        limits: RenderLimits = DEFAULT_LIMITS,
        **options: Any,
    ) -> None:
        super().__init__(
            autoescape=False,
            keep_trailing_newline=True,
            undefined=undefined,
            auto_reload=False,
            **options,
        )
        self.limits = limits
        self.concat = _make_concat(limits.max_output)  # type: ignore[method-assign]
        # Every filter and test is wrapped once, here: each call a template makes checks
        # the deadline and pays for the input it walks (calls of globals, macros and
        # methods go through `call`).
        self.filters["attr"] = _attr
        for name, original in list(self.filters.items()):
            self.filters[name] = _guard_call(
                "filter",
                name,
                original,
                check=_SIZING_FILTERS.get(name),
                walks=None if name in CONSTANT_FILTERS else 0,
                word_by_word=name in _WORD_BY_WORD_FILTERS,
            )
        tests: dict[str, Any] = dict(self.tests)
        for name, test in tests.items():
            self.tests[name] = _guard_call("test", name, test, walks=_WALKING_TESTS.get(name))
        self.filters[GUARD_ITER] = _guard_iter
        self.filters[GUARD_CONCAT] = _guard_concat
        self.filters[GUARD_WEIGH] = _guard_weigh
        self.globals["lipsum"] = _safe_lipsum

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        try:
            tree = super()._parse(source, name, filename)
            result = _Guard().visit(tree)
        except (RecursionError, MemoryError) as exc:
            raise _too_complex(exc) from None
        assert isinstance(result, nodes.Template)
        result.set_environment(self)  # the guard's new nodes need it too
        return result

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        try:
            return super()._generate(source, name, filename, defer_init=defer_init)
        except (RecursionError, MemoryError) as exc:
            raise _too_complex(exc) from None

    def _compile(self, source: str, filename: str) -> CodeType:
        try:
            return super()._compile(source, filename)
        except (SyntaxError, RecursionError, MemoryError) as exc:
            raise _too_complex(exc) from None

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Attribute access from a template. Names starting with an underscore are refused
        outright, whether or not the object has them, so probing Python internals always
        fails loudly."""
        if attribute.startswith("_"):
            raise SecurityError(
                f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
            )
        # Variables are mostly dicts: `user.display_name` is an item. When the name is not one
        # of the dict type's own attributes, Jinja's lookup would fail on the attribute and
        # fall back to the item; go to the item directly, with the same result.
        kind = type(obj)
        if (kind is dict or kind is FrozenDict) and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        """Refuse access to an unsafe attribute at once, rather than rendering it as nothing:
        `'{0.__class__}'.format(x)` must fail loudly, not print an empty string."""
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """Size the result of `*`, `**`, `+`, `%` and `//` before computing it."""
        budget = _budget()
        limits = budget.limits
        budget.tick()
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                    budget.charge(_weight(seq, limits.max_output) * max(count, 0))
            both_ints = isinstance(left, int) and isinstance(right, int)
            if both_ints and left.bit_length() + right.bit_length() > _INT_BITS_LIMIT:
                raise RenderLimitExceeded("integer multiplication too large")
        elif operator == "**":
            huge = (
                isinstance(left, int)
                and isinstance(right, int)
                and abs(left) > 1
                and right * left.bit_length() > _INT_BITS_LIMIT
            )
            if huge:
                raise RenderLimitExceeded(f"{left} ** {right} is too large to compute")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                budget.charge(_weight(left, limits.max_output) + _weight(right, limits.max_output))
        elif operator == "%" and isinstance(left, str):
            _check_format_string(left, limits, braces=False)
        return self.binop_table[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Call a function, macro or method from a template, after the time, width and size
        checks. A method of a str, list or dict is charged for the size of its object."""
        budget = _budget()
        budget.tick()
        if (
            type(__obj) is _BUILTIN_METHOD
            and getattr(__obj, "__name__", "") in ("format", "format_map")
            and isinstance(getattr(__obj, "__self__", None), str)
        ):
            # A raw `str.format` got here without the attribute lookup seeing it (as
            # `|attr("format")` did before Jinja2 3.1.6): it is sandboxed at the call too.
            wrapped = __self.wrap_str_format(__obj)
            if wrapped is not None:
                __obj = wrapped
        elif isinstance(__obj, LoopContext) and args:
            # `loop(children)` in a recursive loop: the children are iterated as any loop is.
            args = (_guard_iter(args[0]), *args[1:])
        target = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped by the sandbox
        owner = getattr(target, "__self__", None)
        if owner is not None and (type(owner) in _SIZED or isinstance(owner, str)):
            method = getattr(target, "__name__", "")
            if method not in _CONSTANT_METHODS:
                _walk_input(owner, budget, f"method {method!r}", budget.limits.max_output)
        if isinstance(owner, str):
            method = getattr(target, "__name__", "")
            if method in _STR_WIDTH_METHODS:
                for value in args:
                    _check_width(f"str.{method} width", value, budget.limits)
                if method == "expandtabs" and args and isinstance(args[0], int):
                    budget.charge(len(owner) + owner.count("\t") * args[0])
            elif method in ("format", "format_map"):
                _check_format_string(owner, budget.limits, braces=True)
            elif method == "join" and args:
                budget.charge(_weight(args[0], budget.limits.max_output))
            elif method == "replace" and len(args) >= 2:
                _check_replace(budget, (owner, args[0], args[1]), {})
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, (str, list, dict, tuple)):
            budget.charge(_weight(result, budget.limits.max_output))
        return result


# --- compiled bodies -------------------------------------------------------------------------


class _DropGuardedUses(NodeTransformer):
    """For the strict-variable analysis: drop the uses of a name that are safe without it
    (`x is defined`, `x is undefined`, `x | default(...)`, and anything inside
    `{% if x is defined %}`), so the names left are the ones a render needs."""

    def visit_Test(self, node: nodes.Test) -> nodes.Node:
        if node.name in ("defined", "undefined") and isinstance(node.node, nodes.Name):
            return nodes.Const(True)
        return self.generic_visit(node)

    def visit_Filter(self, node: nodes.Filter) -> nodes.Node:
        if node.name in ("default", "d") and isinstance(node.node, (nodes.Name, nodes.Getattr)):
            node.node = nodes.Const(None)
        return self.generic_visit(node)

    def visit_If(self, node: nodes.If) -> nodes.Node:
        test = node.test
        if (
            isinstance(test, nodes.Test)
            and test.name == "defined"
            and isinstance(test.node, nodes.Name)
        ):
            guarded = test.node.name
            for child in node.body:
                for name in child.find_all(nodes.Name):
                    if name.name == guarded and name.ctx == "load":
                        name.name = "__promptory_guarded__"
        return self.generic_visit(node)


@dataclass(frozen=True)
class TemplateInfo:
    """The variables a body's syntax tree shows (its references are on `CompiledTemplate`).

    Attributes:
        variables: every top-level variable the body reads, sorted.
        required: the variables it reads without an `is defined` or `default` guard, sorted.
    """

    variables: tuple[str, ...]
    required: tuple[str, ...]


class CompiledTemplate:
    """A prompt body compiled once, ready to render any number of times.

    Attributes:
        references: the names the body includes, imports or extends, in order (None for a
            name computed at run time); found while compiling, from the same parse.
    """

    __slots__ = ("_code", "_info", "_strict", "body", "references", "template")

    def __init__(
        self,
        body: str,
        code: CodeType,
        template: Template,
        references: tuple[str | None, ...],
    ) -> None:
        self.body = body
        self.template = template
        self.references = references
        self._code = code
        self._strict: Template | None = None
        self._info: TemplateInfo | None = None

    @property
    def info(self) -> TemplateInfo:
        """The variables the body reads, found from its syntax tree on first use (rendering
        never needs them, so a body is parsed for them only when asked)."""
        info = self._info
        if info is None:
            try:
                info = self._info = _analyse(self.body)
            except Exception as exc:  # the analysis recurses deeper than compiling did
                raise _uncompilable(exc, None) from None
        return info

    @property
    def strict_template(self) -> Template:
        """The same compiled code bound to the strict environment (missing variables raise)."""
        strict = self._strict
        if strict is None:
            strict = self._strict = Template.from_code(
                _STRICT_ENV, self._code, _globals(_STRICT_ENV)
            )
        return strict


def _analyse(body: str) -> TemplateInfo:
    tree = _PLAIN_ENV.parse(body)
    variables = meta.find_undeclared_variables(tree)
    relaxed = _DropGuardedUses().visit(_PLAIN_ENV.parse(body))
    required = meta.find_undeclared_variables(relaxed) - {"__promptory_guarded__"}
    return TemplateInfo(
        variables=tuple(sorted(variables)),
        required=tuple(sorted(required)),
    )


class _NoIncludes(BaseLoader):
    """The SDK's loader: a local render has no other prompts to include."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, None]:
        raise RenderError(
            f"the body includes {template!r}, and a local render cannot resolve includes; "
            "render it on the server with client.render(prompt_id, variables)",
            code="INCLUDE_NEEDS_SERVER",
        )


_ENV = PromptEnvironment(loader=_NoIncludes())
_STRICT_ENV = PromptEnvironment(undefined=StrictUndefined, loader=_NoIncludes())
# Parsing only, for analysis; never renders. A sandbox too: `meta.find_undeclared_variables`
# runs Jinja's code generator, which folds constant expressions (`9 ** 99999999`,
# `'a' * 10**9`) unless the environment intercepts them.
_PLAIN_ENV = PromptEnvironment()


class CompiledCache:
    """Compiled bodies by their text, least recently used dropped first, bounded both in
    count and in the total characters of the bodies held (a compiled body holds its text,
    its generated code and its template, a few times the body's size in memory).

    Not locked: the caller holds a lock around every call.

    Args:
        max_entries: the most bodies kept.
        max_chars: the most characters of bodies kept in all; a single body longer than
            this is not kept.
    """

    def __init__(self, max_entries: int, max_chars: int) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.chars = 0
        self._entries: OrderedDict[str, CompiledTemplate] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, body: object) -> bool:
        return body in self._entries

    def get(self, body: str) -> CompiledTemplate | None:
        """The compiled `body`, now the most recently used, or None."""
        found = self._entries.get(body)
        if found is not None:
            self._entries.move_to_end(body)
        return found

    def put(self, body: str, compiled: CompiledTemplate) -> None:
        """Keep `compiled`, dropping the least recently used bodies over either bound."""
        if len(body) > self.max_chars:
            return
        if body in self._entries:
            self._entries.move_to_end(body)
            return
        self._entries[body] = compiled
        self.chars += len(body)
        while len(self._entries) > self.max_entries or self.chars > self.max_chars:
            dropped, _ = self._entries.popitem(last=False)
            self.chars -= len(dropped)


#: The most compiled bodies kept, and the most characters of bodies they hold in all.
COMPILED_MAX_ENTRIES = 1024
COMPILED_MAX_CHARS = 64_000_000

_COMPILED = CompiledCache(COMPILED_MAX_ENTRIES, COMPILED_MAX_CHARS)
_COMPILED_LOCK = threading.Lock()


def _reset_compiled_lock_in_child() -> None:
    # A fork while another thread holds the lock would leave it held for good in the child
    # (that thread does not exist there), and the child's first compile would deadlock.
    global _COMPILED_LOCK
    _COMPILED_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_compiled_lock_in_child)


def _globals(environment: Environment) -> dict[str, Any]:
    """The template globals as a plain dict. Jinja hands templates a `ChainMap` over the
    environment's globals, which every render copies item by item in Python; ours never
    change after the environment is built, so one flat copy serves every render."""
    return dict(environment.make_globals(None))


def _uncompilable(exc: Exception, label: str | None) -> RenderError:
    message = exc.message if isinstance(exc, TemplateTooComplex) else _too_complex(exc).message
    return RenderError(f"{_about(label)}{message}", code="TEMPLATE_SYNTAX_ERROR", prompt=label)


def compile_body(body: str, *, label: str | None = None) -> CompiledTemplate:
    """Compile a prompt body in the shared sandbox, or return the copy compiled before.

    Raises:
        RenderError: the body is not a valid template (the message names the line), or it
            is one Python cannot compile (nested too deeply, too large).
    """
    with _COMPILED_LOCK:
        compiled = _COMPILED.get(body)
    if compiled is not None:
        return compiled
    try:
        # One parse serves both the references and the code.
        tree = _ENV._parse(body, label, None)
        references = tuple(meta.find_referenced_templates(tree))
        code = _ENV.compile(tree, name=label)
    except TemplateTooComplex as exc:
        raise _uncompilable(exc, label) from None
    except TemplateSyntaxError as exc:
        raise RenderError(
            f"{_about(label)}template syntax error on line {exc.lineno}: {exc.message}",
            code="TEMPLATE_SYNTAX_ERROR",
            prompt=label,
        ) from exc
    except Exception as exc:  # anything else a hostile body makes Jinja's tree walks raise
        raise _uncompilable(exc, label) from None
    template = Template.from_code(_ENV, code, _globals(_ENV))
    compiled = CompiledTemplate(body, code, template, references)
    with _COMPILED_LOCK:
        _COMPILED.put(body, compiled)
    return compiled


def render_template(
    template: Template,
    variables: Mapping[str, Any] | None,
    *,
    label: str | None = None,
    limits: RenderLimits | None = None,
) -> str:
    """Render a template compiled by a `PromptEnvironment`, within its render limits.

    Raises:
        RenderError: anything the template does wrong (a sandbox violation, a limit, a
            runtime error); the message names the prompt, the line and the cause.
    """
    if variables is None:
        variables = {}
    elif type(variables) is not dict and not isinstance(variables, Mapping):
        raise RenderError(
            f"{_about(label)}variables must be a mapping of names to values, "
            f"not {type(variables).__name__}",
            code="RENDER_ERROR",
            prompt=label,
        )
    environment = template.environment
    if limits is None:
        limits = getattr(environment, "limits", DEFAULT_LIMITS)
        assert isinstance(limits, RenderLimits)
    token = _BUDGET.set(_Budget(limits))
    try:
        # new_context copies the variables into the render's own context.
        context = template.new_context(variables if type(variables) is dict else dict(variables))
        return environment.concat(template.root_render_func(context))
    except Exception as exc:
        raise _render_error(exc, template, label) from exc
    finally:
        _BUDGET.reset(token)


def _render_error(exc: Exception, template: Template, label: str | None) -> RenderError:
    where = _template_line(exc.__traceback__, template)
    if isinstance(exc, TemplateSyntaxError):
        where = f" on line {exc.lineno}" if exc.lineno else ""
    if isinstance(exc, RenderLimitExceeded):
        cause, code = str(exc), "RENDER_LIMIT"
    elif isinstance(exc, SecurityError):
        cause, code = f"refused by the sandbox: {exc}", "SANDBOX_VIOLATION"
    elif isinstance(exc, UndefinedError):
        cause, code = str(exc), "UNDEFINED_VARIABLE"
    elif isinstance(exc, TemplateNotFound):
        cause, code = f"included template {exc.name!r} not found", "INCLUDE_NOT_FOUND"
    elif isinstance(exc, RecursionError):
        cause, code = "recursion too deep (a macro that calls itself without end?)", "RENDER_LIMIT"
    elif isinstance(exc, MemoryError):
        cause, code = "ran out of memory", "RENDER_LIMIT"
    elif isinstance(exc, RenderError):
        return exc
    else:
        cause, code = f"{type(exc).__name__}: {exc}", "RENDER_ERROR"
    message = f"{_about(label)}render failed{where}: {cause}"
    if code == "UNDEFINED_VARIABLE":
        name = getattr(exc, "name", None) or _undefined_name(str(exc))
        return UndefinedVariableError(message, missing=[name] if name else [], prompt=label)
    return RenderError(message, code=code, prompt=label)


def _undefined_name(message: str) -> str | None:
    match = re.match(r"'([^']+)' is undefined", message)
    return match.group(1) if match else None


def _template_line(tb: TracebackType | None, template: Template) -> str:
    """The template line the error happened on, from the compiled code's debug info."""
    line = None
    while tb is not None:
        frame_globals = tb.tb_frame.f_globals
        if frame_globals.get("__jinja_template__") is not None or (
            "debug_info" in frame_globals and "root" in frame_globals
        ):
            debug = frame_globals.get("debug_info", "")
            line = _lookup_line(debug, tb.tb_lineno)
        tb = tb.tb_next
    return f" on line {line}" if line else ""


def _lookup_line(debug_info: str, python_line: int) -> int | None:
    found = None
    for pair in debug_info.split("&"):
        if "=" not in pair:
            continue
        template_line, code_line = pair.split("=")
        if int(code_line) <= python_line:
            found = int(template_line)
    return found


def _about(label: str | None) -> str:
    return f"prompt {label}: " if label else ""
