"""Templates and variables whose local and server renders must be the same string."""

from __future__ import annotations

from typing import Any

VARIABLES: dict[str, Any] = {
    "user": {"display_name": "Alice", "elevenlabs_voice_id": "abc123", "age": 31},
    "vision": {"identity_statement": "I am confident", "deep_why": "for my kids"},
    "items": ["focus", "calm", "gratitude"],
    "scores": {"b": 2, "a": 1, "c": 3},
    "name": "world",
    "formal": False,
    "count": 3,
    "ratio": 0.4567,
    "empty": [],
    "text": "  padded text with <tags> & 'quotes'  ",
    "nested": [{"k": "x", "v": [1, 2]}, {"k": "y", "v": []}],
    "duration_minutes": 10,
    "history": [
        {"role": "user", "content": "earlier question"},
        {"role": "assistant", "content": "earlier answer\nuser:\nnot a role line"},
    ],
}

TEMPLATES: dict[str, str] = {
    "plain": "Just text, no tags.",
    "trailing_newline": "Ends with a newline\n",
    "two_trailing_newlines": "Two\n\n",
    "variable": "Hello {{ user.display_name }}!",
    "subscript": "{{ user['elevenlabs_voice_id'] }}",
    "missing_variable": "[{{ nope }}]",
    "missing_attribute": "[{{ user.nope }}]",
    "if_else": "{% if formal %}Dear{% else %}Hey{% endif %} {{ user.display_name }}",
    "if_missing": "{% if absent %}yes{% else %}no{% endif %}",
    "elif": "{% if count > 5 %}many{% elif count > 2 %}some{% else %}few{% endif %}",
    "for": "{% for item in items %}- {{ item }}\n{% endfor %}",
    "for_else": "{% for x in empty %}{{ x }}{% else %}none{% endfor %}",
    "loop_vars": "{% for i in items %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}",
    "nested_loops": "{% for n in nested %}{{ n.k }}:{% for v in n.v %}{{ v }}{% endfor %};{% endfor %}",
    "whitespace_control": "{%- for i in items -%}\n  {{ i }}\n{%- endfor -%}",
    "filters": "{{ name | upper }} {{ name | title }} {{ text | trim }} {{ items | join(', ') }}",
    "default": "{{ missing | default('World') }} {{ name | default('x') }}",
    "length_first_last": "{{ items | length }} {{ items | first }} {{ items | last }}",
    "round_format": "{{ ratio | round(2) }} {{ '%.1f' | format(ratio) }} {{ '%05d' % count }}",
    "dictsort": "{% for k, v in scores | dictsort %}{{ k }}={{ v }} {% endfor %}",
    "sort_reverse": "{{ items | sort | join(' ') }} {{ items | reverse | join(' ') }}",
    "set": "{% set greeting = 'Hi ' ~ name %}{{ greeting }}",
    "set_block": "{% set block %}inside {{ name }}{% endset %}[{{ block }}]",
    "namespace": "{% set ns = namespace(total=0) %}{% for i in [1, 2, 3] %}{% set ns.total = ns.total + i %}{% endfor %}{{ ns.total }}",
    "macro": "{% macro line(t) %}* {{ t }}\n{% endmacro %}{% for i in items %}{{ line(i) }}{% endfor %}",
    "call_block": "{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}x{% endcall %}",
    "filter_block": "{% filter upper %}shout {{ name }}{% endfilter %}",
    "math": "{{ count * 2 }} {{ count ** 2 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ count + 1.5 }}",
    "comparison": "{{ count == 3 }} {{ 'calm' in items }} {{ items is sequence }}",
    "string_methods": "{{ name.upper() }} {{ name.replace('o', '0') }} {{ 'a,b'.split(',') }}",
    "str_format": "{{ '{} has {} items'.format(user.display_name, count) }}",
    "tojson": "{{ scores | tojson }}",
    "escape_not_applied": "{{ text }}",
    "raw": "{% raw %}{{ not rendered }}{% endraw %}",
    "comment": "a{# hidden #}b",
    "unicode": "Grüße, {{ name }} — 你好 🌍",
    "long_body": "Line {{ count }}\n" * 200,
    "range": "{% for i in range(5) %}{{ i }}{% endfor %}",
    "cycler_joiner": "{% set c = cycler('odd', 'even') %}{% for i in items %}{{ c.next() }} {% endfor %}",
    "spec_meditation": (
        "You are guiding {{ user.display_name }} (voice {{ user.elevenlabs_voice_id }}).\n"
        "Identity: {{ vision.identity_statement }}\nWhy: {{ vision.deep_why }}\n"
        "Length: {{ duration_minutes }} minutes.\n"
    ),
    # Chat templates (README, "Chat prompts"): each message renders on its own, and the
    # text form keeps the role lines as written.
    "chat_roles": "system:\nYou guide {{ user.display_name }}.\n\nuser:\n{{ text }}\n",
    "chat_leading_text": "Preamble for {{ name }}.\nuser:\nHi\nassistant:\nHello {{ name }}\n",
    "chat_prompty_case": "# System:\nBe brief.\n  User :  \n{{ items | join(', ') }}",
    "chat_history": (
        "system:\nKeep it short.\n\n{% for item in history %}\n{{item.role}}:\n"
        "{{item.content}}\n{% endfor %}\n\nuser:\n{{ name }}\n"
    ),
    "chat_empty_message": "system:\n{% if formal %}Formal.{% endif %}\nuser:\nHi\n",
}
