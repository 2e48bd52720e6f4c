"""The request log: time, endpoint, model, host, status, queue wait, latency, tokens, class, client and why the
request went to that host; newest first; filter with `/`.

Hundreds of requests a second must not cost the UI thread much, so the rows are drawn with the line API:
only the visible lines are rendered, each from text formatted once when the record arrived.
"""

from __future__ import annotations

import time
from collections import deque
from functools import lru_cache
from typing import ClassVar, Iterable, NamedTuple, Optional, Sequence

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

from sollol_core.observability.snapshot import RequestRecord

from .. import fmt

MAX_ROWS = 1000


class Cell(NamedTuple):
    key: str
    title: str
    width: int  # 0: flexible, sharing the width left over
    right: bool = False
    min_width: int = 0  # flexible: never narrower than this
    share: int = 0  # flexible: its part of what is left over after the minimums
    max_width: int = 0  # flexible: never wider (0: no bound); beyond it the width goes to the last cell
    from_width: int = 0  # shown only when the line is at least this wide


# Every row keeps a text for every cell; the line width decides which are shown. The last cell (placement:
# why that host, the widest text) takes whatever the others leave.
CELLS = (
    Cell("time", "Time", 8),
    Cell("endpoint", "Endpoint", 0, min_width=10, share=2, max_width=20),
    Cell("model", "Model", 0, min_width=10, share=2, max_width=24),
    Cell("host", "Host", 0, min_width=12, share=2, max_width=22),
    Cell("status", "St", 3, True),
    Cell("wait", "Wait", 6, True),  # time in the gateway queue
    Cell("latency", "Latency", 7, True),
    Cell("tokens", "Tok", 5, True, from_width=100),
    Cell("priority", "Class", 5, from_width=130),
    Cell("client", "Client", 0, min_width=8, share=2, max_width=16, from_width=150),
    Cell("placement", "Placement", 0, min_width=14, share=8),
)
CLASS_SHORT = {"interactive": "inter"}


class Slot(NamedTuple):
    """One shown cell of a line: which cell, its text's index in a row, its width."""

    cell: Cell
    index: int
    width: int


@lru_cache(maxsize=16)
def layout(width: int) -> tuple[Slot, ...]:
    """The cells shown on a line `width` wide and their widths (one space between cells).

    Below the width the fixed cells and the minimums need, the line is wider than the view (cut on the right).
    """
    shown = [(i, c) for i, c in enumerate(CELLS) if width >= c.from_width]
    flexible = [(i, c) for i, c in shown if not c.width]
    fixed = sum(c.width for _, c in shown) + len(shown) - 1
    spare = max(width - fixed, 0)
    widths = {i: c.width or c.min_width for i, c in shown}
    extra = max(spare - sum(c.min_width for _, c in flexible), 0)
    total_share = sum(c.share for _, c in flexible) or 1
    last = flexible[-1][0]
    given = 0
    for i, c in flexible[:-1]:
        grow = extra * c.share // total_share
        if c.max_width:
            grow = max(min(grow, c.max_width - c.min_width), 0)
        widths[i] += grow
        given += grow
    widths[last] += extra - given
    return tuple(Slot(c, i, widths[i]) for i, c in shown)


class Row(NamedTuple):
    texts: tuple[str, ...]  # one per cell of CELLS
    error: bool
    haystack: str  # lower-case text searched by the filter


def make_row(record: RequestRecord, names: Optional[dict[str, str]] = None) -> Row:
    """Everything a line needs, formatted once when the record arrives (the log may take hundreds a second).

    names: address -> what the host table calls the host (its label); the address stays searchable.
    Text a client or a host supplied (the model, the error, the client) is stripped of control characters
    before it is drawn (fmt.clean): a model name must not retitle or clear the operator's terminal.
    """
    clean = fmt.clean
    status = str(record.status) if record.status else "—"
    host = (names.get(record.host) if names else None) or clean(record.host) or "(none)"
    why = record.placement
    if record.error:
        why = f"{record.error}; {why}" if why else record.error
    texts = (
        time.strftime("%H:%M:%S", time.localtime(record.time)),
        clean(record.endpoint),
        clean(record.model) or "—",
        host,
        status,
        fmt.ms(record.wait_ms),
        fmt.ms(record.latency_ms),
        "—" if record.tokens is None else str(record.tokens),
        CLASS_SHORT.get(record.priority, record.priority),
        clean(record.client) or "—",
        clean(why) or "—",
    )
    error = record.status >= 400 or bool(record.error)
    haystack = " ".join((*texts, record.priority, record.host)).lower()
    return Row(texts, error, haystack)


def line_text(texts: Sequence[str], slots: Sequence[Slot]) -> str:
    out = []
    for cell, index, width in slots:
        out.append(fmt.fit(texts[index], width, right=cell.right))
    return " ".join(out)


TITLES = tuple(c.title for c in CELLS)


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
        self.names: dict[str, str] = {}  # address -> the host's name in the table (set by the dashboard)

    @property
    def shown(self) -> int:
        return len(self._shown)

    def shown_rows(self) -> list[tuple[str, ...]]:
        """The texts of the rows that pass the filter, newest first."""
        return [row.texts for row in reversed(self._shown)]

    def add(self, records: Iterable[RequestRecord]) -> None:
        added = 0
        for record in list(records)[-MAX_ROWS:]:  # a burst larger than the log keeps only what fits
            row = make_row(record, self.names)
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
            text = line_text(TITLES, layout(width))
            return Strip([Segment(fmt.fit(text, width), titles)], width)
        index = int(self.scroll_y) + y - 1
        if not self._shown:
            if y == 1:
                text = "no request matches the filter" if self._filter else self.empty_text
                muted = base + self.get_component_rich_style("request-lines--muted", partial=True)
                return Strip([Segment(fmt.fit(text, width), muted)], width)
            return Strip.blank(width, base)
        if index >= len(self._shown):
            return Strip.blank(width, base)
        row = self._shown[-1 - index]
        style: Style = base
        if row.error:
            style = base + self.get_component_rich_style("request-lines--error", partial=True)
        text = line_text(row.texts, layout(width))
        return Strip([Segment(fmt.fit(text, width), style)], width)


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
