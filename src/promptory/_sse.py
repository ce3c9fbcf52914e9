"""A sans-IO parser of Server-Sent Events (the WHATWG HTML "event stream" format).

Rules of this module:

* No I/O: `EventParser.feed(line)` takes one decoded line (without its line ending) and
  returns the event it completes, if any. `LineSplitter.feed(chunk)` cuts received bytes
  into such lines (``\r\n``, ``\n`` or ``\r``), at most `max_line` bytes each.
* It follows the spec's field rules: ``event``, ``data`` (lines joined with ``\\n``),
  ``id`` (ignored when it holds NUL; kept across events as the last event id), ``retry``
  (ASCII digits only, at most `MAX_RETRY_DIGITS` of them); a line starting with ``:`` is a
  comment (a heartbeat); a blank line dispatches; an event without data is not dispatched.
* Bounded: data beyond `max_data` characters makes the event be dropped, and a line beyond
  `max_line` bytes is dropped up to its end (the server is hostile until proved otherwise);
  the parse goes on with what follows. Bytes that are not UTF-8 are replaced, never raised.

The SDK's runtime dependencies are httpx and Jinja2 only: these lines replace a dependency
on httpx-sse for the one stream the SDK reads.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MAX_EVENT_ID",
    "MAX_RETRY_DIGITS",
    "Event",
    "EventParser",
    "LineSplitter",
    "LineTooLong",
]

#: A ``retry`` value longer than this (a day is 8 digits of milliseconds) is ignored.
MAX_RETRY_DIGITS = 9
#: The longest event id kept (a longer one, or one that is not printable ASCII, is ignored:
#: it is sent back as ``Last-Event-ID``, and a header cannot carry any text).
MAX_EVENT_ID = 256


class LineTooLong(ValueError):
    """A line longer than the splitter's bound: the stream is not one worth reading on."""


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
            if len(value) <= MAX_EVENT_ID and value.isascii() and value.isprintable():
                self.last_event_id = value
        elif (
            name == "retry"
            and 0 < len(value) <= MAX_RETRY_DIGITS
            and value.isascii()  # str.isdigit() alone takes "²", which int() refuses
            and value.isdigit()
        ):
            self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        event, data, overflow = self._event, self._data, self._overflow
        self._event, self._data, self._size, self._overflow = "", [], 0, False
        if overflow or not data:
            return None
        return Event(event or "message", "\n".join(data), self.last_event_id)


class LineSplitter:
    """Cuts a byte stream into decoded lines, each at most `max_line` bytes.

    A longer line raises `LineTooLong`: a server sending one is not followed further (the
    reader hangs up and reconnects later), and nothing of it reaches the parser.

    Args:
        max_line: the most bytes one line may hold.
    """

    def __init__(self, max_line: int = 1_100_000) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._after_cr = False

    def feed(self, chunk: bytes) -> list[str]:
        """Take received bytes; return the lines they complete."""
        lines: list[str] = []
        start = 0
        if self._after_cr and chunk[:1] == b"\n":
            start = 1  # the \n of a \r\n split across chunks
        self._after_cr = False
        size = len(chunk)
        while start < size:
            cr, lf = chunk.find(b"\r", start), chunk.find(b"\n", start)
            end = min(cr, lf) if cr >= 0 and lf >= 0 else max(cr, lf)
            if end < 0:
                self._keep(chunk[start:])
                break
            self._keep(chunk[start:end])
            lines.append(self._buffer.decode("utf-8", "replace"))
            self._buffer.clear()
            start = end + 1
            if chunk[end : end + 1] == b"\r":
                if start < size and chunk[start : start + 1] == b"\n":
                    start += 1
                elif start == size:
                    self._after_cr = True
        return lines

    def _keep(self, part: bytes) -> None:
        if len(self._buffer) + len(part) > self.max_line:
            self._buffer.clear()
            raise LineTooLong(f"a line of the event stream is over {self.max_line:,} bytes")
        self._buffer += part
