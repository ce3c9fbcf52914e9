"""Sandbox-escape and denial-of-service payloads for prompt bodies and variables.

Every entry of `REFUSED` must fail with a clear render error, quickly, on the client and on
the server alike; every entry of `INERT` must render, with the payload treated as data.
"""

from __future__ import annotations

from typing import Any

OBJ: dict[str, Any] = {"x": "text", "n": 5, "items": [1, 2, 3], "d": {"k": "v"}}

REFUSED: dict[str, tuple[str, dict[str, Any]]] = {
    # escapes through Python internals
    "str_class_mro": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", {}),
    "tuple_bases": ("{{ ().__class__.__bases__[0].__subclasses__() }}", {}),
    "cycler_globals": ("{{ cycler.__init__.__globals__.os.system('id') }}", {}),
    "joiner_globals": ("{{ joiner.__init__.__globals__ }}", {}),
    "namespace_globals": ("{{ namespace.__init__.__globals__ }}", {}),
    "lipsum_globals": ("{{ lipsum.__globals__['os'] }}", {}),
    "range_globals": ("{{ range.__self__ }}", {}),
    "self_context": ("{{ self._TemplateReference__context }}", {}),
    "attr_filter": ("{{ x | attr('__class__') }}", OBJ),
    "subscript_dunder": ("{{ x['__class__'] }}", OBJ),
    "dict_class": ("{{ d.__class__.__subclasses__() }}", OBJ),
    "func_code": ("{{ cycler.__code__ }}", {}),
    "gi_frame": ("{{ (items | map('string')).gi_frame }}", OBJ),
    "mutate_variable": ("{{ items.append(4) }}", OBJ),
    "mutate_dict": ("{{ d.update({'k': 'changed'}) }}", OBJ),
    "undefined_call": ("{{ config.items() }}", {}),
    # format-string tricks
    "str_format_attr": ("{{ '{0.__class__.__mro__}'.format(x) }}", OBJ),
    "str_format_map": ("{{ '{x.__class__}'.format_map({'x': x}) }}", OBJ),
    "format_width_bomb": ("{{ '{:>999999999}'.format(x) }}", OBJ),
    "format_nested_width": ("{{ '{:{}}'.format(x, 999999999) }}", OBJ),
    "percent_width_bomb": ("{{ '%999999999s' % x }}", OBJ),
    "percent_star_width": ("{{ '%*s' % (999999999, x) }}", OBJ),
    "format_filter_bomb": ("{{ '%999999999d' | format(n) }}", OBJ),
    # time bombs
    "huge_range": ("{% for i in range(10**9) %}{% endfor %}", {}),
    "nested_loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        {},
    ),
    "triple_loop_output": (
        "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}"
        "x{% endfor %}{% endfor %}{% endfor %}",
        {},
    ),
    "recursive_macro": ("{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}", {}),
    "big_power": ("{{ 9 ** 99999999 }}", {}),
    "lipsum_bomb": ("{{ lipsum(10**6) }}", {}),
    "slice_bomb": ("{{ items | slice(10**9) | list }}", OBJ),
    "batch_bomb": ("{{ items | batch(10**9, 'x') | list }}", OBJ),
    # memory bombs
    "string_multiply": ("{{ 'a' * 10**9 }}", {}),
    "list_multiply": ("{{ [1] * 10**9 }}", {}),
    "string_doubling": (
        "{% set ns = namespace(s='a') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s | length }}",
        {},
    ),
    "list_doubling": (
        "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}"
        "{% endfor %}{{ ns.l | length }}",
        {},
    ),
    "shared_literals": (
        "{% set a = ['x' * 1000] %}{% set b = [a, a, a, a, a, a, a, a, a, a] %}"
        "{% set c = [b, b, b, b, b, b, b, b, b, b] %}{% set d = [c, c, c, c, c, c, c, c, c, c] %}"
        "{% set e = [d, d, d, d, d, d, d, d, d, d] %}{{ e }}",
        {},
    ),
    "repeat_output": ("{% for i in range(100000) %}{{ big }}{% endfor %}", {"big": "x" * 10_000}),
    "macro_output": (
        "{% macro m() %}{% for i in range(100000) %}{{ big }}{% endfor %}{% endmacro %}{{ m() }}",
        {"big": "x" * 10_000},
    ),
    "ljust_bomb": ("{{ x.ljust(10**9) }}", OBJ),
    "center_filter_bomb": ("{{ x | center(10**9) }}", OBJ),
    "indent_filter_bomb": ("{{ x | indent(10**9) }}", OBJ),
    "replace_bomb": ("{{ ('a' * 100000) | replace('a', 'b' * 100000) }}", {}),
    "join_bomb": ("{{ ([x * 100000] * 100000) | join }}", OBJ),
    "sum_lists": ("{{ [[1] * 100000] * 1000 | sum(start=[]) }}", {}),
}

INERT: dict[str, tuple[str, dict[str, Any], str]] = {
    "template_syntax_in_a_variable": (
        "{{ v }}",
        {"v": "{{ ''.__class__.__mro__ }}{% for i in range(10**9) %}"},
        "{{ ''.__class__.__mro__ }}{% for i in range(10**9) %}",
    ),
    "dunder_key_in_a_variable": ("{{ d['__class__'] }}", {"d": {"__class__": "plain"}}, "plain"),
    "large_but_allowed_output": ("{{ 'ab' * 1000 }}", {}, "ab" * 1000),
}

# Each width is small; the product of width and count is not.
REFUSED.update(
    {
        "many_padded_fields": ("{{ ('{0:>99999}' * 2000).format(1) | length }}", {}),
        "many_padded_percent": ("{{ ('%99999d' * 2000) % ((1,) * 2000) }}", {}),
        "expandtabs_many_tabs": ("{{ ('\\t' * 50000).expandtabs(99999) }}", {}),
        "indent_many_lines": ("{{ ('a\\n' * 50000) | indent(99999) }}", {}),
        "many_centered_calls": (
            "{% for i in range(3000) %}{{ 'x'.center(99999) }}{% endfor %}",
            {},
        ),
        "wordwrap_slow": ("{{ ('x' * 999999) | wordwrap(1) }}", {}),
    }
)

# --- the sandbox escape of CVE-2025-27516 ---------------------------------------------------

#: An environment variable the escape tests set; no render may ever show its value.
CANARY_VARIABLE = "PROMPTORY_TEST_CANARY"
CANARY_VALUE = "canary-5e1d7a-from-the-environment"

#: `|attr("format")` hands a template a string's own `format` method. Before Jinja2 3.1.6
#: that was the raw method, whose fields read any attribute: the published proofs of
#: concept walk from an object to `os.environ`. Each must be refused, whatever Jinja2 runs.
FORMAT_ESCAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "attr_format_class": ('{{ "{0.__class__}" | attr("format")(x) }}', OBJ),
    "attr_format_loader_environ": (
        '{{ ("{0.__init__.__globals__[__loader__].load_module.__globals__[sys].modules[os]'
        '.environ}" | attr("format"))(hi) }}',
        {},
    ),
    "attr_format_call_builtins": (
        '{{ "{0.__call__.__builtins__[__import__]}" | attr("format")(not_here) }}',
        {},
    ),
    "attr_format_cycler_environ": (
        '{{ ("{0.__init__.__globals__[os].environ[' + CANARY_VARIABLE + ']}"'
        ' | attr("format"))(cycler) }}',
        {},
    ),
    "attr_format_lipsum_globals": (
        '{{ ("{0.__globals__[threading]._os.environ}" | attr("format"))(lipsum) }}',
        {},
    ),
    "attr_format_map_environ": (
        '{{ ("{x.__init__.__globals__[os].environ}" | attr("format_map"))({"x": joiner}) }}',
        {},
    ),
    "stored_attr_format": (
        '{% set f = "{0.__init__.__globals__[os].environ}" | attr("format") %}{{ f(cycler) }}',
        {},
    ),
    "attr_format_of_a_variable": (
        '{{ (fmt | attr("format"))(cycler) }}',
        {"fmt": "{0.__init__.__globals__[os].environ}"},
    ),
}

REFUSED.update(FORMAT_ESCAPES)

# --- work that builtin filters do inside nested loops ---------------------------------------

#: The render that took 8.4 s against a 0.5 s limit: 63 x 63 sorts of 2,500 strings.
REFUSED["nested_sort_reproducer"] = (
    "{% set l = range(2500)|map('string')|list %}{% set seq='x'*63 %}{% for a in seq %}"
    "{% for b in seq %}{% set _ = l|sort %}{% endfor %}{% endfor %}done",
    {},
)

#: Every builtin filter (`jinja2.defaults.DEFAULT_FILTERS`) whose work grows with its input,
#: and how the family below applies it: to `l` (strings), `n` (numbers), `s` (text) or `d`
#: (a dict). A filter Jinja2 adds later fails `test_every_builtin_filter_is_classified`
#: until it is listed here or in `NOT_WALKING_FILTERS`.
WALKING_FILTERS: dict[str, str] = {
    "batch": "l | batch(3) | list",
    "capitalize": "s | capitalize",
    "center": "s | center(20000)",
    "dictsort": "d | dictsort",
    "e": "s | e",
    "escape": "s | escape",
    "float": "s | float",
    "forceescape": "s | forceescape",
    "format": "s | format",
    "groupby": "l | groupby(0) | list",
    "indent": "s | indent(2)",
    "int": "s | int",
    "items": "d | items | list",
    "join": "l | join(',')",
    "list": "l | list",
    "lower": "s | lower",
    "map": "l | map('upper') | list",
    "max": "l | max",
    "min": "l | min",
    "pprint": "l | pprint",
    "reject": "l | reject('none') | list",
    "rejectattr": "l | rejectattr(0) | list",
    "replace": "s | replace(' ', '_')",
    "reverse": "l | reverse | list",
    "safe": "s | safe",
    "select": "l | select | list",
    "selectattr": "l | selectattr(0) | list",
    "slice": "l | slice(3) | list",
    "sort": "l | sort",
    "string": "l | string",
    "striptags": "s | striptags",
    "sum": "n | sum",
    "title": "s | title",
    "tojson": "l | tojson",
    "trim": "s | trim",
    "unique": "l | unique | list",
    "upper": "s | upper",
    "urlencode": "s | urlencode",
    "urlize": "s | urlize",
    "wordcount": "s | wordcount",
    "wordwrap": "s | wordwrap(40)",
    "xmlattr": "d | xmlattr",
}

#: The builtin filters whose work does not grow with their input, and why.
NOT_WALKING_FILTERS: dict[str, str] = {
    "abs": "one number",
    "attr": "one attribute",
    "count": "len()",
    "d": "the value or its default",
    "default": "the value or its default",
    "filesizeformat": "one number",
    "first": "one item",
    "last": "one item, from the end",
    "length": "len()",
    "random": "one item",
    "round": "one number",
    "truncate": "at most its length argument (a checked width)",
}

#: How deeply the family nests its loops.
NESTING_DEPTHS = (2, 3, 4)

#: The dict the family's `d` is (sent as a variable: a template cannot build one this big).
WALK_DICT: dict[str, Any] = {f"k{i}": i for i in range(2500)}

_WALK_SETUP = (
    "{% set l = range(2500) | map('string') | list %}{% set n = range(2500) | list %}"
    "{% set s = l | join(' ') %}{% set seq = 'x' * 63 %}"
)


def nested_walk(expression: str, depth: int) -> str:
    """A body that evaluates `expression` inside `depth` nested loops of 63 rounds each."""
    return (
        _WALK_SETUP
        + "{% for a in seq %}" * depth
        + "{% set _ = "
        + expression
        + " %}"
        + "{% endfor %}" * depth
        + "done"
    )


#: Loops nested 2-4 deep around every builtin filter that walks its input: each must end at
#: the render's time limit (or its work limit), however much one call costs.
NESTED_WALKS: dict[str, tuple[str, dict[str, Any]]] = {
    f"nested_{depth}_{name}": (nested_walk(expression, depth), {"d": WALK_DICT})
    for name, expression in WALKING_FILTERS.items()
    for depth in NESTING_DEPTHS
}


def oversized_inputs() -> dict[str, Any]:
    """Variables for `WALKING_FILTERS` past the per-call limits: 200,000 items, 1,200,000
    characters. One call on them must be refused before it runs, not after."""
    return {
        "l": [str(i) for i in range(200_000)],
        "n": list(range(200_000)),
        "s": "word " * 240_000,
        "d": {f"k{i}": i for i in range(200_000)},
    }


# --- bodies Jinja reads but Python cannot compile -------------------------------------------

#: Each parses as a template; compiling it hits one of Python's limits (20 nested blocks,
#: 100 indentation levels, 200 nested parentheses, the recursion limit). Each must be a
#: `RenderError` in the SDK and a reported, skipped file on the server.
UNCOMPILABLE: dict[str, str] = {
    "nested_for_25": "{% for a in x %}" * 25 + "{% endfor %}" * 25 + "\n",
    "nested_if_200": "{% if x %}" * 200 + "{% endif %}" * 200 + "\n",
    "nested_parentheses_300": "{{ " + "(" * 300 + "1" + ")" * 300 + " }}\n",
    "nested_lists_300": "{{ " + "[" * 300 + "]" * 300 + " }}\n",
    "additions_3000": "{{ " + " + ".join(["1"] * 3000) + " }}\n",
}
