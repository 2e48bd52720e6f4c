"""One row per host: name, state, score, slots, cache hits, latency and its trend, TTFT, success, load, models,
priority, weight.

Drawn with the line API, like the request log: under load every row changes a few times a second, and a
DataTable re-renders each of its cells through Rich on any change. Here a row is one line of segments, made
again only when its text, the cursor or the theme changed, and only the lines that changed are repainted.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple, Optional, Sequence

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from sollol_core.observability.snapshot import HostView

from .. import fmt


class Column(NamedTuple):
    key: str
    label: str
    width: int


# Fixed widths: a cell update never triggers a re-measure of the table, and rows never jump sideways.
# The most important columns come first: an 80-column terminal shows everything up to OK % without scrolling
# (20+10+7+7+6+8+10+7+5 = 80), and 120 columns show them all (117).
# Widths include one leading space, the only gap between columns (cell padding 0).
COLUMNS: tuple[Column, ...] = (
    Column("address", "Host", 20),  # the label when there is one ("fast (sim)"), else the address
    Column("state", "State", 10),
    Column("score", "Score", 7),
    Column("slots", "Slots", 7),  # in use / slots; "2/2~": learned from the host's answers
    Column("cache", "Cache", 6),  # prompt-cache hit rate
    Column("latency", "Latency", 8),
    Column("trend", "Trend", 10),
    Column("ttft", "TTFT", 7),
    Column("success", "OK %", 5),
    Column("cpu", "CPU", 5),
    Column("gpu", "GPU", 6),
    Column("models", "Models loaded", 16),
    Column("priority", "Prio", 5),
    Column("weight", "Wt", 5),
)
TREND_WIDTH = 9  # the trend column minus its leading space
LINE_WIDTH = sum(c.width for c in COLUMNS)


def host_cells(view: HostView, name: Optional[str] = None) -> dict[str, str]:
    """Plain text of each cell (styles are added by the table, which knows the theme).

    name: what to call the host (see fmt.host_names); its label or address when not given.
    """
    cache = view.cache
    return {
        "address": name or fmt.host_name(view.host, view.label),
        "state": view.state,
        "score": f"{view.score:.3f}" if view.score < 100 else f"{view.score:.0f}",
        "latency": fmt.ms(view.latency_ms),
        "trend": fmt.sparkline(view.latency_history, TREND_WIDTH),
        "slots": fmt.slots(view.slots_in_use, view.slots) + ("~" if view.slots_learned else ""),
        "cache": fmt.percent(cache.hit_rate if cache is not None else None),
        "ttft": fmt.ms(view.ttft_ms),
        "success": fmt.percent(view.success_rate),
        "cpu": fmt.percent(view.cpu_load),
        "gpu": fmt.mib(view.gpu_free_mem),
        "models": ", ".join(fmt.short_model(m) for m in view.models_loaded) or "—",
        "priority": str(view.priority),
        "weight": f"{view.weight:g}",
    }


def slots_full(text: str) -> bool:
    """'4/4', '5/4' or '2/2~' (learned): every slot taken (requests for this host wait in the gateway)."""
    used, _, limit = text.rstrip("~").partition("/")
    return limit.isdigit() and used.isdigit() and int(used) >= int(limit)


class HostTable(ScrollView, can_focus=True):
    """The host table: a header line, then one line per host; the cursor row is the selected host.

    ``show(hosts)`` repaints only the rows whose text changed. Moving the cursor posts ``Highlighted``.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "host-table--header", "host-table--cursor",
        "host-table--healthy", "host-table--unhealthy", "host-table--draining", "host-table--disabled",
        "host-table--trend", "host-table--muted", "host-table--full",
    }

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False, id="host-table.up",
                tooltip="Select the host above."),
        Binding("down", "cursor(1)", "Down", show=False, id="host-table.down",
                tooltip="Select the host below."),
        Binding("pageup", "cursor_page(-1)", "Page up", show=False, id="host-table.page-up",
                tooltip="Select the host a screenful above."),
        Binding("pagedown", "cursor_page(1)", "Page down", show=False, id="host-table.page-down",
                tooltip="Select the host a screenful below."),
        Binding("home", "cursor_to(0)", "First host", show=False, id="host-table.first",
                tooltip="Select the first host."),
        Binding("end", "cursor_to(-1)", "Last host", show=False, id="host-table.last",
                tooltip="Select the last host."),
    ]

    DEFAULT_CSS = """
    HostTable { background: $surface; color: $foreground; height: auto; max-height: 100%;
                overflow-x: auto; overflow-y: auto; scrollbar-size: 1 1; }
    HostTable:focus { background-tint: $foreground 5%; }
    HostTable > .host-table--header { text-style: bold; background: $panel; color: $foreground; }
    HostTable:focus > .host-table--header { background-tint: $foreground 5%; }
    HostTable:ansi > .host-table--header { background: ansi_bright_blue; color: ansi_default; }
    HostTable > .host-table--cursor { background: $block-cursor-blurred-background;
                                      color: $block-cursor-blurred-foreground;
                                      text-style: $block-cursor-blurred-text-style; }
    HostTable:focus > .host-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground;
                                            text-style: $block-cursor-text-style; }
    HostTable > .host-table--healthy { color: $success; text-style: bold; }
    HostTable > .host-table--unhealthy { color: $error; text-style: bold; }
    HostTable > .host-table--draining { color: $warning; text-style: bold; }
    HostTable > .host-table--disabled { color: $text-muted; }
    HostTable > .host-table--trend { color: $primary; }
    HostTable > .host-table--muted { color: $text-muted; }
    HostTable > .host-table--full { color: $warning; text-style: bold; }
    """

    class Highlighted(Message):
        """The cursor is on another host (None: the table is empty)."""

        def __init__(self, address: Optional[str]) -> None:
            super().__init__()
            self.address = address

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self._order: list[str] = []  # addresses, top to bottom
        self._cells: dict[str, dict[str, str]] = {}
        self._lines: dict[str, tuple[object, list[Segment]]] = {}  # address -> (what it was made from, segments)
        self._styles: dict[str, Style] = {}
        self._styles_for: object = None
        self.cursor_row = 0
        self.names: dict[str, str] = {}  # address -> the name shown (the request log uses the same)

    def on_mount(self) -> None:
        self.virtual_size = Size(LINE_WIDTH, 1)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.restyle())

    # what the dashboard and the actions ask -----------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def selected_address(self) -> Optional[str]:
        """Address of the host under the cursor, None when the table is empty."""
        if not self._order:
            return None
        return self._order[min(max(self.cursor_row, 0), len(self._order) - 1)]

    def select_address(self, address: str) -> None:
        if address in self._cells:
            self._move_cursor(self._order.index(address))

    def cell(self, address: str, key: str) -> str:
        """The text of one cell, as shown (without the column's leading space and padding)."""
        return self._cells[address][key]

    def show(self, hosts: Sequence[HostView]) -> None:
        wanted = [h.host for h in hosts]
        names = self.names = fmt.host_names([(h.host, h.label) for h in hosts])
        selected = self.selected_address
        for view in hosts:
            cells = host_cells(view, names[view.host])
            if self._cells.get(view.host) != cells:
                self._cells[view.host] = cells
                if wanted == self._order:
                    self._refresh_row(self._order.index(view.host))
        if wanted != self._order:
            for address in [a for a in self._cells if a not in wanted]:
                del self._cells[address]
                self._lines.pop(address, None)
            self._order = wanted
            self.virtual_size = Size(LINE_WIDTH, len(wanted) + 1)
            row = wanted.index(selected) if selected in wanted else min(self.cursor_row, max(len(wanted) - 1, 0))
            self.cursor_row = row
            self.refresh(layout=True)
            if self.selected_address != selected:
                self.post_message(self.Highlighted(self.selected_address))

    def restyle(self) -> None:
        """Make every line again (a theme change: the styles are the theme's)."""
        self._styles_for = None
        self.refresh()

    # the cursor -----------------------------------------------------------------------------------------
    def action_cursor(self, step: int) -> None:
        self._move_cursor(self.cursor_row + step)

    def action_cursor_page(self, direction: int) -> None:
        self._move_cursor(self.cursor_row + direction * max(self._visible_rows(), 1))

    def action_cursor_to(self, row: int) -> None:
        self._move_cursor(row if row >= 0 else len(self._order) - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        row = int(self.scroll_y) + offset.y - 1
        if 0 <= row < len(self._order):
            self._move_cursor(row)

    def _move_cursor(self, row: int) -> None:
        if not self._order:
            return
        row = min(max(row, 0), len(self._order) - 1)
        if row == self.cursor_row:
            return
        old, self.cursor_row = self.cursor_row, row
        visible = max(self._visible_rows(), 1)
        top = int(self.scroll_y)
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + visible:
            self.scroll_to(y=row - visible + 1, animate=False, immediate=True)
        self._refresh_row(old)
        self._refresh_row(row)
        self.post_message(self.Highlighted(self.selected_address))

    def _visible_rows(self) -> int:
        return self.scrollable_content_region.height - 1  # the header line stays

    def _refresh_row(self, row: int) -> None:
        y = 1 + row - int(self.scroll_y)
        if 1 <= y < self.size.height:
            self.refresh(Region(0, y, self.size.width, 1))

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles_for = None  # the CSS changed (the theme, focus): styles and lines are made again

    # drawing --------------------------------------------------------------------------------------------
    def _style(self, name: str) -> Style:
        key = (self.app.theme, self.has_focus)
        if key != self._styles_for:  # also None after notify_style_update
            self._styles_for = key
            self._styles = {}
            self._lines.clear()
        style = self._styles.get(name)
        if style is None:
            base = self.rich_style
            if name == "":
                style = base
            elif name == "header":  # whole, not partial: its background tint is blended in
                style = base + self.get_component_rich_style("host-table--header")
            else:
                style = base + self.get_component_rich_style(f"host-table--{name}", partial=True)
            self._styles[name] = style
        return style

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_x = int(self.scroll_x)
        if y == 0:
            fill = self._style("header")  # the header and the cursor row reach across the whole width
            segments = [Segment("".join(" " + fmt.fit(c.label, c.width - 1) for c in COLUMNS), fill)]
        else:
            row = int(self.scroll_y) + y - 1
            if row >= len(self._order):
                return Strip.blank(width, self._style(""))
            cursor = row == self.cursor_row
            fill = self._style("cursor") if cursor else self._style("")
            segments = self._row_segments(self._order[row], cursor)
        return Strip(segments, LINE_WIDTH).crop_extend(scroll_x, scroll_x + width, fill)

    def _row_segments(self, address: str, cursor: bool) -> list[Segment]:
        cells = self._cells[address]
        made_from = (cells, cursor)
        self._style("")  # drops the made lines when the theme or the focus changed
        kept = self._lines.get(address)
        if kept is not None and kept[0] == made_from:
            return kept[1]
        segments = []
        cursor_style = self._style("cursor") if cursor else None
        for column in COLUMNS:
            text = cells[column.key]
            style = self._cell_style(column.key, text)
            if cursor_style is not None:
                style = style + cursor_style
            segments.append(Segment(" " + fmt.fit(text, column.width - 1), style))
        self._lines[address] = (made_from, segments)
        return segments

    def _cell_style(self, key: str, text: str) -> Style:
        if key == "state" and f"host-table--{text}" in self.COMPONENT_CLASSES:
            return self._style(text)
        if key == "trend":
            return self._style("trend")
        if key == "slots" and slots_full(text):
            return self._style("full")
        if text == "—":
            return self._style("muted")
        return self._style("")
