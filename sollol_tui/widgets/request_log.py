"""The request log: time, endpoint, model, host, status, latency, tokens; newest first; filter with `/`.

Hundreds of requests a second must not cost the UI thread much, so the rows are drawn with the line API:
only the visible lines are rendered, each from text formatted once when the record arrived.
"""

from __future__ import annotations

import time
from collections import deque
from typing import ClassVar, Iterable, NamedTuple, Optional

from rich.segment import Segment
from rich.style import Style
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input

from sollol_core.snapshot import RequestRecord

from .. import fmt

MAX_ROWS = 1000


class Cell(NamedTuple):
    key: str
    title: str
    width: int  # 0: shares the width left over
    right: bool = False


CELLS = (
    Cell("time", "Time", 8),
    Cell("endpoint", "Endpoint", 0),
    Cell("model", "Model", 0),
    Cell("host", "Host", 0),
    Cell("status", "St", 3, True),
    Cell("latency", "Latency", 7, True),
    Cell("tokens", "Tok", 5, True),
)
_FLEX_SHARE = {"endpoint": 3, "model": 3, "host": 4}


def column_widths(width: int) -> list[int]:
    """Width of each cell for a line `width` wide (one space between cells)."""
    fixed = sum(c.width for c in CELLS) + len(CELLS) - 1
    spare = max(width - fixed, 3 * 6)
    total_share = sum(_FLEX_SHARE.values())
    widths, given = [], 0
    for c in CELLS:
        if c.width:
            widths.append(c.width)
        elif c.key == "host":
            widths.append(spare - given)
        else:
            w = spare * _FLEX_SHARE[c.key] // total_share
            given += w
            widths.append(w)
    return widths


class Row(NamedTuple):
    texts: tuple[str, ...]
    error: bool
    haystack: str  # lower-case text searched by the filter


def make_row(record: RequestRecord) -> Row:
    status = str(record.status) if record.status else "—"
    texts = (
        time.strftime("%H:%M:%S", time.localtime(record.time)),
        record.endpoint,
        record.model or "—",
        record.host or "(none)",
        status,
        fmt.ms(record.latency_ms),
        "—" if record.tokens is None else str(record.tokens),
    )
    error = record.status >= 400 or bool(record.error)
    haystack = " ".join(texts).lower() + (" " + record.error.lower() if record.error else "")
    return Row(texts, error, haystack)


def line_text(texts: Iterable[str], widths: list[int]) -> str:
    out = []
    for text, cell, width in zip(texts, CELLS, widths):
        text = fmt.truncate(text, width)
        out.append(text.rjust(width) if cell.right else text.ljust(width))
    return " ".join(out)


class RequestLines(ScrollView):
    """The rows themselves (newest first), drawn line by line."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"request-lines--error", "request-lines--muted",
                                             "request-lines--titles"}
    DEFAULT_CSS = """
    RequestLines { overflow-x: hidden; overflow-y: auto; height: 1fr; scrollbar-size-vertical: 1; }
    RequestLines > .request-lines--error { color: $error; }
    RequestLines > .request-lines--muted { color: $text-muted; }
    RequestLines > .request-lines--titles { color: $text-muted; text-style: bold; }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self._rows: deque[Row] = deque(maxlen=MAX_ROWS)  # oldest left, newest right
        self._shown: deque[Row] = deque(maxlen=MAX_ROWS)  # the rows that pass the filter
        self._filter = ""
        self.empty_text = "no requests yet"

    @property
    def shown(self) -> int:
        return len(self._shown)

    def shown_rows(self) -> list[tuple[str, ...]]:
        """The texts of the rows that pass the filter, newest first."""
        return [row.texts for row in reversed(self._shown)]

    def add(self, records: Iterable[RequestRecord]) -> None:
        added = 0
        for record in list(records)[-MAX_ROWS:]:  # a burst larger than the log keeps only what fits
            row = make_row(record)
            self._rows.append(row)
            if not self._filter or self._filter in row.haystack:
                self._shown.append(row)
                added += 1
        if added:
            self._resize()
            if self.scroll_y > 0:  # reading older rows: keep them where they are
                self.scroll_to(y=self.scroll_y + added, animate=False, immediate=True)
            self.refresh()

    def set_filter(self, text: str) -> None:
        self._filter = text.strip().lower()
        self._shown = deque((r for r in self._rows if not self._filter or self._filter in r.haystack),
                            maxlen=MAX_ROWS)
        self.scroll_to(y=0, animate=False, immediate=True)
        self._resize()
        self.refresh()

    def _resize(self) -> None:
        # line 0 of the view is always the column titles; rows start below it
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._shown) + 1)

    def on_resize(self) -> None:
        self._resize()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            titles = base + self.get_component_rich_style("request-lines--titles", partial=True)
            text = line_text((c.title for c in CELLS), column_widths(width))
            return Strip([Segment(text.ljust(width), titles)], width)
        index = int(self.scroll_y) + y - 1
        if not self._shown:
            if y == 1:
                text = "no request matches the filter" if self._filter else self.empty_text
                muted = base + self.get_component_rich_style("request-lines--muted", partial=True)
                return Strip([Segment(fmt.truncate(text, width).ljust(width), muted)], width)
            return Strip.blank(width, base)
        if index >= len(self._shown):
            return Strip.blank(width, base)
        row = self._shown[-1 - index]
        style: Style = base
        if row.error:
            style = base + self.get_component_rich_style("request-lines--error", partial=True)
        text = line_text(row.texts, column_widths(width))
        return Strip([Segment(text.ljust(width), style)], width)


class RequestLog(Vertical):
    """Filter box (shown by `/`), column titles and the rows."""

    BINDINGS = [
        Binding("escape", "close_filter", "Clear filter", show=False, id="request-log.close-filter",
                tooltip="Clear the filter and hide the filter box."),
    ]
    DEFAULT_CSS = """
    RequestLog { height: 1fr; }
    RequestLog #request-filter { display: none; background: $boost; }
    RequestLog.-filtering #request-filter { display: block; }
    """

    class FilterChanged(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: text in any column (Enter keeps it, Esc clears)", id="request-filter",
                    compact=True)
        yield RequestLines(id="request-lines")

    @property
    def lines(self) -> RequestLines:
        return self.query_one(RequestLines)

    @property
    def filter_text(self) -> str:
        return self.query_one("#request-filter", Input).value

    def add(self, records: Iterable[RequestRecord]) -> None:
        self.lines.add(records)

    def open_filter(self) -> None:
        self.add_class("-filtering")
        self.query_one("#request-filter", Input).focus()

    def action_close_filter(self) -> None:
        box = self.query_one("#request-filter", Input)
        box.value = ""
        self.lines.set_filter("")
        self.remove_class("-filtering")
        self.lines.focus()

    @on(Input.Changed, "#request-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.lines.set_filter(event.value)
        self.post_message(self.FilterChanged(event.value))

    @on(Input.Submitted, "#request-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.remove_class("-filtering")
        self.lines.focus()
