"""Text from outside made safe to show: control characters written as escapes.

A file name, a tag or a body from a repository may hold a newline (which forges a log line),
an escape sequence (which a terminal obeys: OSC 52 writes the clipboard, CSI moves the
cursor), a bidirectional override (which reorders what is shown) or a lone surrogate (which
a log handler cannot encode). Where such text reaches a log line or a terminal it goes
through `escape_controls` (or `escape_json_controls` for JSON meant for a terminal).
"""

from __future__ import annotations

import re

__all__ = ["escape_controls", "escape_json_controls"]

# C0, DEL and C1 controls, line and paragraph separators, bidirectional embeddings,
# overrides and isolates, and lone surrogates (file names that are not UTF-8).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# What JSON text (already escaping C0 and quotes) may still carry to a terminal.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, *, keep: str = "") -> str:
    """`text` with each control character (but those in `keep`, such as ``"\\n\\t"`` for a
    body shown on a terminal) written as ``\\n``, ``\\xNN`` or ``\\uNNNN``."""
    if not keep:
        return _CONTROLS.sub(_escape, text)
    return _CONTROLS.sub(lambda m: m.group() if m.group() in keep else _escape(m), text)


def escape_json_controls(text: str) -> str:
    """JSON text with the characters JSON leaves raw but a terminal obeys (C1 controls,
    separators, bidirectional controls) written as ``\\uNNNN``: still the same JSON."""
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
