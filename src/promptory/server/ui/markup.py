"""HTML for repository text: a template body split into lines with its Jinja tags marked,
and a unified diff split into classified lines. Everything is escaped here, first; the
pages mark the result safe."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

from ..records import PromptRecord

__all__ = ["PromptRows", "body_lines", "diff_lines", "error_line"]

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


class PromptRows:
    """The table rows of an app's prompts page, one ``<tr>`` per prompt, made once per
    prompt version and kept (at most `max_rows`; the cache empties when full).

    A row is built here rather than in the template: a page of 1,000 prompts is then a join
    of kept strings, not 6,000 template lookups and escapes. Its links are relative to the
    app's page (``/ui/apps/ORG/APP``), which keeps every row short.
    """

    def __init__(self, max_rows: int = 50_000) -> None:
        self.max_rows = max_rows
        self._rows: dict[tuple[str, str], str] = {}

    def row(self, record: PromptRecord) -> str:
        """The ``<tr>`` of a served record (prepared and valid)."""
        served = record.ready
        assert served is not None
        key = (record.path, served.etag)
        found = self._rows.get(key)
        if found is not None:
            return found
        file = served.file
        name = escape(record.name)
        inactive = "" if record.active else " <i>inactive</i>"
        found = (
            f'<tr><td><a href="{escape(record.app)}/{name}/{record.environment}">{name}</a>'
            f"{inactive}<td>{escape(file.version)}<td>{record.environment}<td>{file.type}"
            f"<td>{escape(', '.join(file.tags))}<td>{served.data['updated_at'][:10]}</tr>\n"
        )
        if len(self._rows) >= self.max_rows:
            self._rows.clear()
        self._rows[key] = found
        return found

    def table(self, records: list[PromptRecord]) -> Markup:
        """The rows of `records`, as one piece of HTML."""
        row = self.row
        return Markup("".join([row(record) for record in records]))
