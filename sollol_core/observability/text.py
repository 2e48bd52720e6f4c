"""Text that a client or a host supplied, made safe to draw on a terminal.

A model name, an error message, a host's label or a client's name may carry control characters: an escape
sequence (ESC ]0;...BEL retitles the terminal, ESC ]52 writes to the clipboard, ESC [2J clears the screen),
or C1 controls that some terminals read the same way. `printable` drops every C0 and C1 control character
(and DEL); tabs and line breaks become spaces, so one record stays one line. Used by whatever draws such
text (the dashboard), and by nothing on the request path.
"""

from __future__ import annotations

_SPACES = {0x09: " ", 0x0A: " ", 0x0B: " ", 0x0C: " ", 0x0D: " "}
_TABLE: dict[int, str | None] = {c: None for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))} | _SPACES


def printable(text: str) -> str:
    """`text` without C0/C1 control characters (tabs and line breaks as spaces)."""
    if text.isprintable():  # the common case: nothing to do (and no copy)
        return text
    return text.translate(_TABLE)
