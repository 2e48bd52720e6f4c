"""One row per host: name, state, score, slots, cache hits, latency and its trend, TTFT, success, load, models,
priority, weight."""

from __future__ import annotations

from typing import ClassVar, NamedTuple, Optional, Sequence

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

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


class HostTable(DataTable[Text]):
    """The host table. ``show(hosts)`` updates only the cells whose text changed."""

    COMPONENT_CLASSES: ClassVar[set[str]] = DataTable.COMPONENT_CLASSES | {
        "host-table--healthy", "host-table--unhealthy", "host-table--draining", "host-table--disabled",
        "host-table--trend", "host-table--muted", "host-table--full",
    }

    DEFAULT_CSS = """
    HostTable > .host-table--healthy { color: $success; text-style: bold; }
    HostTable > .host-table--unhealthy { color: $error; text-style: bold; }
    HostTable > .host-table--draining { color: $warning; text-style: bold; }
    HostTable > .host-table--disabled { color: $text-muted; }
    HostTable > .host-table--trend { color: $primary; }
    HostTable > .host-table--muted { color: $text-muted; }
    HostTable > .host-table--full { color: $warning; text-style: bold; }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=0)
        self._cells: dict[str, dict[str, str]] = {}
        self.names: dict[str, str] = {}  # address -> the name shown (the request log uses the same)

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(Text(" " + column.label), width=column.width, key=column.key)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.restyle())

    @property
    def selected_address(self) -> Optional[str]:
        """Address of the host under the cursor, None when the table is empty."""
        if self.row_count == 0:
            return None
        row = min(max(self.cursor_row, 0), self.row_count - 1)
        row_key, _ = self.coordinate_to_cell_key(Coordinate(row, 0))
        return row_key.value

    def select_address(self, address: str) -> None:
        if address in self._cells:
            self.move_cursor(row=self.get_row_index(address))

    def show(self, hosts: Sequence[HostView]) -> None:
        wanted = [h.host for h in hosts]
        names = self.names = fmt.host_names([(h.host, h.label) for h in hosts])
        for address in [a for a in self._cells if a not in wanted]:
            self.remove_row(address)
            del self._cells[address]
        for view in hosts:
            cells = host_cells(view, names[view.host])
            old = self._cells.get(view.host)
            if old is None:
                self.add_row(*(self._styled(c.key, cells[c.key]) for c in COLUMNS), key=view.host)
            else:
                for column in COLUMNS:
                    text = cells[column.key]
                    if old.get(column.key) != text:
                        self.update_cell(view.host, column.key, self._styled(column.key, text))
            self._cells[view.host] = cells

    def restyle(self) -> None:
        """Re-apply styles after a theme change (cells hold styled Text)."""
        for address, cells in self._cells.items():
            for column in COLUMNS:
                self.update_cell(address, column.key, self._styled(column.key, cells[column.key]))

    def _styled(self, key: str, text: str) -> Text:
        cell = Text(" ")
        if key == "state":
            cell.append(text, style=self.get_component_rich_style(f"host-table--{text}", partial=True))
        elif key == "trend":
            cell.append(text, style=self.get_component_rich_style("host-table--trend", partial=True))
        elif key == "slots" and slots_full(text):
            cell.append(text, style=self.get_component_rich_style("host-table--full", partial=True))
        elif text == "—":
            cell.append(text, style=self.get_component_rich_style("host-table--muted", partial=True))
        else:
            cell.append(text)
        return cell
