"""HTML for repository text: a template body split into lines with its Jinja tags marked,
and a unified diff split into classified lines. Everything is escaped here, first; the
pages mark the result safe."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

__all__ = ["body_lines", "diff_lines", "error_line"]

# A Jinja tag, comment or expression; an unclosed one runs to the end of the body.
_TAG = re.compile(r"{{.*?(?:}}|$)|{%.*?(?:%}|$)|{#.*?(?:#}|$)", re.S)
_CLASS = {"{{": "jv", "{%": "jt", "{#": "jc"}
# What render errors say about where they happened: "... on line 3: ...".
_LINE = re.compile(r"\bon line (\d+)\b")


def body_lines(body: str) -> list[Markup]:
    """The body as escaped HTML lines, each Jinja construct in a ``<span>`` of class
    ``jv`` (expression), ``jt`` (statement) or ``jc`` (comment); a construct running over
    several lines is marked on each."""
    lines: list[Markup] = []
    current: list[str] = []
    position = 0

    def add(text: str, css: str | None) -> None:
        pieces = text.split("\n")
        for index, piece in enumerate(pieces):
            if index:
                lines.append(Markup("".join(current)))
                current.clear()
            if piece:
                escaped = str(escape(piece))
                current.append(f'<span class="{css}">{escaped}</span>' if css else escaped)

    for match in _TAG.finditer(body):
        add(body[position : match.start()], None)
        add(match.group(), _CLASS[match.group()[:2]])
        position = match.end()
    add(body[position:], None)
    if current or not body.endswith("\n"):
        lines.append(Markup("".join(current)))
    return lines


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """(css class, text) of each line of a unified diff: ``add``, ``del``, ``hunk``,
    ``file`` or ``ctx``."""
    result = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            css = "file"
        elif line.startswith("@@"):
            css = "hunk"
        elif line.startswith("+"):
            css = "add"
        elif line.startswith("-"):
            css = "del"
        else:
            css = "ctx"
        result.append((css, line))
    return result


def error_line(message: str) -> int | None:
    """The body line a render error names, if it names one."""
    match = _LINE.search(message)
    return int(match.group(1)) if match else None
