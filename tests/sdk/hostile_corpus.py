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
