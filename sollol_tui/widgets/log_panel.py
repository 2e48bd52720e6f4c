"""Log records and stray prints, shown instead of written over the screen."""

from __future__ import annotations

import logging
from collections import deque
from typing import Iterable

from rich.text import Text
from textual import events
from textual.widgets import RichLog

from ..fmt import clean

LEVEL_STYLES = {logging.WARNING: "yellow", logging.ERROR: "bold red", logging.CRITICAL: "bold red"}


class LogPanel(RichLog):
    """A bounded RichLog fed in batches. Also receives what anything prints while the app runs."""

    DEFAULT_CSS = """
    LogPanel { height: 1fr; scrollbar-size-vertical: 1; }
    """

    def __init__(self, *, id: str | None = None, max_lines: int = 1000) -> None:
        super().__init__(id=id, max_lines=max_lines, wrap=False, markup=False, highlight=False, auto_scroll=True)
        self.line_count_total = 0
        self.texts: deque[str] = deque(maxlen=max_lines)  # plain text of the lines shown, for searching

    def add(self, records: Iterable[tuple[int, str]]) -> None:
        for level, line in records:
            line = clean(line)  # a log line may quote a client's or a host's text
            style = ""
            for threshold, candidate in LEVEL_STYLES.items():
                if level >= threshold:
                    style = candidate
            self.write(Text(line, style=style))
            self.texts.append(line)
            self.line_count_total += 1

    def on_print(self, event: events.Print) -> None:
        text = event.text.rstrip("\n")
        if text.strip():
            self.add([(logging.WARNING if event.stderr else logging.INFO, text)])
