"""A sans-IO parser of Server-Sent Events (the WHATWG HTML "event stream" format).

Rules of this module:

* No I/O: `EventParser.feed(line)` takes one decoded line (without its line ending) and
  returns the event it completes, if any. The caller reads lines however it likes.
* It follows the spec's field rules: ``event``, ``data`` (lines joined with ``\\n``),
  ``id`` (ignored when it holds NUL; kept across events as the last event id), ``retry``
  (digits only); a line starting with ``:`` is a comment (a heartbeat); a blank line
  dispatches; an event without data is not dispatched.
* Bounded: data beyond `max_data` characters makes the event be dropped (the server is
  hostile until proved otherwise), and the parse goes on with the next event. `split_lines`
  refuses a line longer than its bound (`LineTooLong`) instead of buffering it: a stream
  that never sends a line ending cannot grow the reader's memory.
* An ``id`` is kept only when it could be sent back as ``Last-Event-ID``: printable ASCII,
  at most `MAX_ID` characters (anything else is ignored, as the spec ignores one with NUL).

The SDK's runtime dependencies are httpx and Jinja2 only: these forty lines replace a
dependency on httpx-sse for the one stream the SDK reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["MAX_ID", "Event", "EventParser", "LineTooLong", "split_lines"]

#: The longest event id kept (ours are 40-hex-digit commit ids).
MAX_ID = 256

_EOL = re.compile(r"\r\n|\r|\n")


class LineTooLong(ValueError):
    """The stream sent a line longer than the reader's bound."""


def split_lines(chunks: Iterable[str], max_line: int) -> Iterator[str]:
    """The lines of decoded text `chunks` (``\\r\\n``, ``\\r`` or ``\\n`` ends a line).

    Raises:
        LineTooLong: a line passes `max_line` characters (raised as soon as it does).
    """
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        # A final "\r" may be the first half of "\r\n": wait for the next chunk.
        held = buffer.endswith("\r")
        parts = _EOL.split(buffer[:-1] if held else buffer)
        buffer = parts.pop() + ("\r" if held else "")
        yield from parts
        if len(buffer) > max_line:
            raise LineTooLong(f"the stream sent a line over {max_line:,} characters")
    if buffer:
        yield from _EOL.split(buffer.rstrip("\r"))


@dataclass(frozen=True)
class Event:
    """One dispatched event."""

    event: str
    data: str
    id: str


class EventParser:
    """Turns lines of an event stream into `Event`s.

    Args:
        max_data: the most characters of data one event may carry.
    """

    def __init__(self, max_data: int = 1_000_000) -> None:
        self.max_data = max_data
        self.last_event_id = ""
        self.retry: int | None = None
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._overflow = False

    def feed(self, line: str) -> Event | None:
        """Take one line; return the event a blank line completes."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._size += len(value) + 1
            if self._size > self.max_data:
                self._overflow = True
                self._data.clear()
            elif not self._overflow:
                self._data.append(value)
        elif name == "id":
            if len(value) <= MAX_ID and value.isascii() and value.isprintable():
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        event, data, overflow = self._event, self._data, self._overflow
        self._event, self._data, self._size, self._overflow = "", [], 0, False
        if overflow or not data:
            return None
        return Event(event or "message", "\n".join(data), self.last_event_id)
