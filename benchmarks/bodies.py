"""The prompt texts the benchmarks use: a realistic 4 KB template and its variables.

`SUPPORT_BODY` is what a production system prompt looks like: mostly prose, with variables,
attribute lookups, conditionals, a loop over a list of dicts and a few common filters
(`default`, `upper`, `title`, `join`, `length`, `round`). It is about 4 KB, has no includes,
and renders the same in the SDK's sandbox and in plain Jinja2.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SUPPORT_BODY",
    "SUPPORT_FRONT_MATTER",
    "prose_body",
    "support_body",
    "support_variables",
]

_PROSE = (
    "Answer in the customer's language, keep each reply under 150 words, and never invent "
    "order numbers, tracking links or refund amounts: if a fact is not given below, say you "
    "will check and hand the conversation to a human colleague. "
)

SUPPORT_BODY = (
    """You are {{ assistant_name | default("Ava") }}, the customer support assistant of \
{{ company.name }}. Today is {{ today }}.
You are talking to {{ user.first_name | title }} {{ user.last_name | title }} \
(customer since {{ user.since }}, {{ user.tier | upper }} tier).

{% if user.tier == "premium" %}
This is a premium customer: offer free express shipping on any replacement and a callback \
within {{ company.callback_hours }} hours if the problem is not solved in this chat.
{% elif user.tier == "business" %}
This is a business customer: mention their account manager, {{ user.account_manager }}, \
and that invoices can be re-issued with a VAT number on request.
{% else %}
Standard customer: replacements ship with standard delivery; returns are free within \
{{ company.return_days }} days of delivery.
{% endif %}

## How to answer
"""
    + _PROSE * 3
    + """

## The customer's recent orders ({{ orders | length }})
{% for order in orders %}
{{ loop.index }}. Order {{ order.id }} of {{ order.date }}: {{ order["items"] | join(", ") }}.
   Total {{ "%.2f" | format(order.total) }} {{ company.currency }}; status: \
{{ order.status | upper }}{% if order.delayed %} (delayed: {{ order.delay_reason }}){% endif %}.
{% endfor %}

## Open tickets
{% if tickets %}
{% for ticket in tickets %}
- #{{ ticket.number }} ({{ ticket.opened }}): {{ ticket.subject }} -- {{ ticket.state }}
{% endfor %}
{% else %}
The customer has no open tickets.
{% endif %}

## Policies
"""
    + _PROSE * 4
    + """
Refunds above {{ company.refund_limit | round(0) | int }} {{ company.currency }} need a \
human's approval. Loyalty points: {{ user.points }} (worth \
{{ (user.points / 100) | round(2) }} {{ company.currency }}).
{% if user.preferences.contact == "phone" %}The customer prefers a phone call.\
{% else %}The customer prefers {{ user.preferences.contact | default("email") }}.{% endif %}

## Tone
"""
    + _PROSE * 3
    + """
Sign off as {{ assistant_name | default("Ava") }} from the {{ company.name }} team.
"""
)

#: Front matter of the support prompt as a repository holds it.
SUPPORT_FRONT_MATTER: dict[str, Any] = {
    "version": "3.2.1",
    "type": "chat",
    "role": "system",
    "environment": "production",
    "domain": "support",
    "description": "System prompt of the support assistant, with the customer's context.",
    "model": {
        "default": "gemini-2.0-flash",
        "temperature": 0.4,
        "max_tokens": 1200,
        "fallback": ["gpt-4o-mini", "claude-3-5-haiku"],
    },
    "tags": ["support", "orders", "system"],
}


def support_body(index: int) -> str:
    """A distinct body of the same shape and size as `SUPPORT_BODY` (for many prompts)."""
    return f"{{# variant {index} #}}\n" + SUPPORT_BODY


def prose_body(index: int) -> str:
    """A distinct 4 KB body that is mostly prose, with a few variables and one condition.

    For figures about many prompts (memory), where what the template does does not matter:
    the server compiles each distinct body on its first request, and a body with fewer tags
    compiles several times faster."""
    paragraph = _PROSE * 4
    return (
        f"Prompt {index}. You are {{{{ assistant_name }}}}, helping {{{{ user.name }}}}.\n\n"
        + "\n\n".join([paragraph] * 4 + [_PROSE])
        + "\n{% if notes %}Notes: {{ notes }}{% endif %}\n"
    )


def support_variables() -> dict[str, Any]:
    """Realistic variables for `SUPPORT_BODY`: a customer, five orders, two tickets."""
    return {
        "assistant_name": "Ava",
        "today": "2026-11-24",
        "company": {
            "name": "Northwind Outfitters",
            "callback_hours": 4,
            "return_days": 30,
            "currency": "EUR",
            "refund_limit": 250.0,
        },
        "user": {
            "first_name": "alice",
            "last_name": "martin",
            "since": "2019",
            "tier": "premium",
            "account_manager": "Bob Stone",
            "points": 12345,
            "preferences": {"contact": "email"},
        },
        "orders": [
            {
                "id": f"NW-{1000 + i}",
                "date": f"2026-11-{10 + i:02d}",
                "items": ["trail shoes", "wool socks", "rain jacket"][: 1 + i % 3],
                "total": 49.9 + 17.25 * i,
                "status": ["delivered", "shipped", "processing"][i % 3],
                "delayed": i == 2,
                "delay_reason": "carrier backlog",
            }
            for i in range(5)
        ],
        "tickets": [
            {"number": 88121, "opened": "2026-11-20", "subject": "Wrong size", "state": "open"},
            {"number": 88190, "opened": "2026-11-22", "subject": "Late parcel", "state": "new"},
        ],
    }
