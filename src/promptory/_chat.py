"""Chat templates: a prompt body split into role-tagged message templates, before rendering.

Rules of this module (no I/O; shared by the SDK and the server):

* A role line is a line holding only ``system:``, ``user:`` or ``assistant:`` (any case,
  spaces around, an optional leading ``#``), as Prompty writes them. It opens a message with
  that role; the text up to the next role line is that message's template.
* The conversation history goes where the body holds Prompty's history loop, alone on its
  lines::

      {% for item in chat_history %}
      {{item.role}}:
      {{item.content}}
      {% endfor %}

  (any loop variable and list name). It becomes a placeholder filled with the list of
  messages passed as that variable (or as ``history=`` to `Prompt.to_messages`).
* The split happens on the body as written, never on rendered text: each message template is
  rendered on its own, so text a variable brings in (role lines, history loops, newlines)
  stays inside the message it was put in and can neither open a message nor change a role.
* Text before the first role line is a message with the prompt's own role (``system`` when it
  has none); whitespace there opens no message. A body without role lines or history loop is
  not a chat template: it is one message, rendered as before.
* The text form of a chat template (`Prompt.render`, the ``rendered_body`` of the render
  endpoint) is every role line as written followed by its message rendered, in order: the
  same string a render of the whole body gives when no Jinja block spans a role line.
* In the messages, each rendered content is stripped of the whitespace around it, and a
  message left empty is dropped (a message whose content sits in a false ``{% if %}``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HISTORY_ROLES",
    "MAX_HISTORY_MESSAGES",
    "MAX_MESSAGE_TEMPLATES",
    "ChatError",
    "MessageTemplate",
    "build_messages",
    "history_messages",
    "is_chat",
    "join_rendered",
    "split_body",
]

#: Most role lines a body may hold (more is refused when the file is indexed).
MAX_MESSAGE_TEMPLATES = 200
#: Most messages a history list may hold.
MAX_HISTORY_MESSAGES = 1000
#: The roles a history message may have.
HISTORY_ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool", "developer")

_ROLE_LINE = re.compile(r"[ \t]*#?[ \t]*(system|user|assistant)[ \t]*:[ \t]*\r?\n?", re.I)
_HISTORY_LOOP = re.compile(
    r"[ \t]*\{%-?[ \t]*for[ \t]+(?P<item>[A-Za-z_]\w*)[ \t]+in[ \t]+(?P<name>[A-Za-z_]\w*)"
    r"[ \t]*-?%\}[ \t]*\r?\n"
    r"[ \t]*\{\{-?[ \t]*(?P=item)\.role[ \t]*-?\}\}[ \t]*:[ \t]*\r?\n"
    r"[ \t]*\{\{-?[ \t]*(?P=item)\.content[ \t]*-?\}\}[ \t]*\r?\n"
    r"[ \t]*\{%-?[ \t]*endfor[ \t]*-?%\}[ \t]*(?:\r?\n|\Z)"
)


# Most bodies hold no role line and no loop: told apart by searches for a literal (a line
# ending in ':', a '{%' tag opening a loop), which run in C, before any line-by-line walk.
_COLON_AT_LINE_END = re.compile(r":[ \t]*\r?$", re.M)
_FOR_TAG = re.compile(r"\{%-?[ \t]*for[ \t]")


def _may_be_chat(body: str) -> bool:
    if "{%" in body and _FOR_TAG.search(body) is not None:
        return True
    for match in _COLON_AT_LINE_END.finditer(body):
        start = body.rfind("\n", 0, match.start()) + 1
        if _ROLE_LINE.fullmatch(body, start, match.end()) is not None:
            return True
    return False


class ChatError(ValueError):
    """A chat template or a history list that cannot be used; the message says why."""


@dataclass(frozen=True)
class MessageTemplate:
    """One part of a chat body.

    Attributes:
        role: the role its role line gives, lowercase; None for text before any role line
            (the prompt's own role) and for the history placeholder.
        header: the role line as written, newline included ("" when there is none).
        source: the template of the message, exactly as written after the role line; for the
            history placeholder, the loop as written.
        history: the variable holding the history list, for the history placeholder.
        line: the body line (1-based) where `source` starts.
    """

    role: str | None
    header: str
    source: str
    history: str | None = None
    line: int = 1


def split_body(body: str) -> tuple[MessageTemplate, ...]:
    """The parts of `body`, in order; one untagged part when it holds no role line.

    Raises:
        ChatError: more than `MAX_MESSAGE_TEMPLATES` role lines.
    """
    if not _may_be_chat(body):
        return (MessageTemplate(None, "", body),)
    parts: list[MessageTemplate] = []
    role: str | None = None
    header = ""
    start = 0  # where the current part's source starts
    start_line = 1
    position = 0
    line = 1
    size = len(body)
    while position < size:
        end = body.find("\n", position)
        end = size if end < 0 else end + 1
        loop = _HISTORY_LOOP.match(body, position)
        role_line = None if loop else _ROLE_LINE.fullmatch(body, position, end)
        if loop is not None or role_line is not None:
            if position > start or header or parts:
                parts.append(MessageTemplate(role, header, body[start:position], line=start_line))
            if len(parts) > MAX_MESSAGE_TEMPLATES:
                raise ChatError(
                    f"the body holds more than {MAX_MESSAGE_TEMPLATES} role lines, the most "
                    "a chat template may; split it into several prompts"
                )
            if loop is not None:
                text = loop.group(0)
                parts.append(MessageTemplate(None, "", text, loop.group("name"), line))
                line += text.count("\n")
                role, header, position = None, "", loop.end()
            else:
                assert role_line is not None
                role, header = role_line.group(1).lower(), role_line.group(0)
                line += 1
                position = end
            start, start_line = position, line
            continue
        line += 1
        position = end
    if not parts:
        return (MessageTemplate(None, "", body),)
    parts.append(MessageTemplate(role, header, body[start:], line=start_line))
    return tuple(parts)


def is_chat(parts: Sequence[MessageTemplate]) -> bool:
    """True when the body had role lines or a history placeholder."""
    return len(parts) > 1 or bool(parts and (parts[0].header or parts[0].history))


def join_rendered(parts: Sequence[MessageTemplate], texts: Sequence[str]) -> str:
    """The text form of a rendered chat body: each role line as written, then its text."""
    return "".join(part.header + text for part, text in zip(parts, texts, strict=True))


def history_messages(value: Any, name: str) -> list[dict[str, Any]]:
    """A history list checked and copied: each item a mapping with a known ``role`` and a
    string ``content`` (other keys, such as ``tool_calls``, are kept).

    Raises:
        ChatError: not a list, too long, or an item that is not a message; names which.
    """
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ChatError(f"history {name!r} must be a list of messages, not {type(value).__name__}")
    if len(value) > MAX_HISTORY_MESSAGES:
        raise ChatError(
            f"history {name!r} holds {len(value)} messages, over the limit of "
            f"{MAX_HISTORY_MESSAGES}"
        )
    messages = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ChatError(f"history {name!r}[{index}] must be a mapping with role and content")
        role = item.get("role")
        if role not in HISTORY_ROLES:
            raise ChatError(
                f"history {name!r}[{index}] has role {role!r}; expected one of "
                f"{', '.join(HISTORY_ROLES)}"
            )
        content = item.get("content")
        if content is not None and not isinstance(content, str):
            raise ChatError(f"history {name!r}[{index}] content must be a string or null")
        messages.append({str(key): val for key, val in item.items()})
    return messages


def build_messages(
    parts: Sequence[MessageTemplate],
    texts: Sequence[str],
    variables: Mapping[str, Any] | None,
    default_role: str | None,
) -> list[dict[str, Any]]:
    """The messages of a rendered chat body: one per non-empty part, the history
    placeholder replaced by the history list found in `variables`.

    Raises:
        ChatError: a history list that is not a list of messages.
    """
    given = variables or {}
    messages: list[dict[str, Any]] = []
    for part, text in zip(parts, texts, strict=True):
        if part.history is not None:
            messages.extend(history_messages(given.get(part.history), part.history))
            continue
        content = text.strip()
        if content:
            messages.append({"role": part.role or default_role or "system", "content": content})
    return messages
