"""Text from outside (a DICOM header, an AE title, a peer's error) made safe to put in a log line.

A log is read line by line, by people and by collectors: a header value holding a newline would forge a line of its
own ("... triaged\n2026-01-01 cxrtriage.pacs INFO instance ok"), and other control characters can rewrite a
terminal. :func:`loggable` escapes every control character (C0, DEL, C1 and the Unicode line and paragraph
separators) so that one call of the logger stays one line, and caps the length so that a hostile value cannot flood
the log. It is the one rule every module that logs such text uses (the DICOM node and the Orthanc poller, the web
service's request log and its authentication refusals)."""

from __future__ import annotations

__all__ = ["loggable"]

#: what a logged outside value is cut to (an AE title is 16 characters, a reason a sentence)
MAX_CHARS = 300

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escaped(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"\\x{code:02x}"
    if code in (0x2028, 0x2029, 0x85):  # Unicode line and paragraph separators split lines in many readers
        return f"\\u{code:04x}"
    return ch


def loggable(text: object, limit: int = MAX_CHARS) -> str:
    """``text`` as one printable log line: control characters escaped (``\\n``, ``\\x1b``, ...; a backslash doubled,
    so an escape cannot be faked either), at most ``limit`` characters followed by ``...`` when cut."""
    value = str(text)
    cut = len(value) > limit
    escaped = "".join(_escaped(ch) for ch in value[:limit])
    return escaped + ("..." if cut else "")
