"""The main screen: header, host table with the selected host's detail, and the tabbed lower half (requests,
batch queue, log, gateway queue and its clients).

It only arranges and feeds widgets; the app owns the data (snapshots, feeds) and the actions.
On a roomy terminal (at least ROOMY_SIZE) the detail sits beside the table with every score term on its
own line and two sparklines; on a small one it is a compact block under the table.
"""

from __future__ import annotations

from typing import Iterable, Optional

from textual import events
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from sollol_core.observability.snapshot import ClusterSnapshot, HostView, RequestRecord

from ..widgets.batch_panel import BatchPanel
from ..widgets.header import ClusterHeader
from ..widgets.host_detail import HostDetail
from ..widgets.host_table import HostTable
from ..widgets.log_panel import LogPanel
from ..widgets.queue_panel import QueuePanel
from ..widgets.request_log import RequestLog

ROOMY_SIZE = (110, 32)  # columns, rows


class DashboardScreen(Screen[None]):
    DEFAULT_CSS = """
    DashboardScreen { layout: vertical; }
    DashboardScreen #hosts { height: auto; max-height: 8; width: 1fr; }
    DashboardScreen #detail { height: auto; padding: 0 1; background: $surface; }
    DashboardScreen #detail #sparks { display: none; }
    DashboardScreen.-roomy #hosts { max-height: 14; }
    DashboardScreen.-roomy #detail #detail-text { width: 64; }
    DashboardScreen.-roomy #detail #sparks { display: block; }
    DashboardScreen #tabs { height: 1fr; }
    DashboardScreen #tabs TabPane { padding: 0; }
    DashboardScreen #tabs ContentSwitcher { height: 1fr; }
    """

    def __init__(self, *, show_uptime: bool = True) -> None:
        super().__init__(id="dashboard")
        self.show_uptime = show_uptime
        self._snapshot: Optional[ClusterSnapshot] = None

    def compose(self) -> ComposeResult:
        yield ClusterHeader(id="header", show_uptime=self.show_uptime)
        yield HostTable(id="hosts")
        yield HostDetail(id="detail", full=False)
        with TabbedContent(id="tabs", initial="requests-tab"):
            with TabPane("Requests", id="requests-tab"):
                yield RequestLog(id="requests")
            with TabPane("Batch", id="batch-tab"):
                yield BatchPanel(id="batch")
            with TabPane("Log", id="log-tab"):
                yield LogPanel(id="log")
            with TabPane("Queue", id="queue-tab"):  # 4th, as its key
                yield QueuePanel(id="queue")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        # looked up once: the poll shows a snapshot several times a second
        self._header = self.query_one(ClusterHeader)
        self._hosts = self.query_one(HostTable)
        self._detail = self.query_one(HostDetail)
        self._batch = self.query_one(BatchPanel)
        self._queue = self.query_one(QueuePanel)
        self._requests = self.query_one(RequestLog)
        self._log = self.query_one(LogPanel)
        self._hosts.focus()

    # pieces the app talks to ------------------------------------------------------------------------
    @property
    def host_table(self) -> HostTable:
        return self._hosts

    @property
    def request_log(self) -> RequestLog:
        return self._requests

    @property
    def queue_panel(self) -> QueuePanel:
        return self._queue

    @property
    def log_panel(self) -> LogPanel:
        return self._log

    @property
    def live(self) -> bool:
        """False once shutdown has begun removing the widgets (a last poll may still arrive then)."""
        return self._hosts.is_attached and not self.app._closing

    def show(self, snapshot: ClusterSnapshot) -> None:
        if not self.live:
            return
        self._snapshot = snapshot
        self._header.show(snapshot)
        self._hosts.show(snapshot.hosts)
        self._requests.lines.names = self._hosts.names  # the log names hosts as the table does
        self._batch.show(snapshot.batch)
        self._queue.show(snapshot.queue, snapshot.clients)
        self._show_detail()

    def add_requests(self, records: Iterable[RequestRecord]) -> None:
        if self.live:
            self.request_log.add(records)

    def add_log_lines(self, lines: Iterable[tuple[int, str]]) -> None:
        if self.live:
            self.log_panel.add(lines)

    def selected_view(self) -> Optional[HostView]:
        address = self.host_table.selected_address
        if self._snapshot is None or address is None:
            return None
        return next((h for h in self._snapshot.hosts if h.host == address), None)

    def show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def open_filter(self) -> None:
        self.show_tab("requests-tab")
        self.request_log.open_filter()

    # layout -------------------------------------------------------------------------------------------
    def on_resize(self, event: events.Resize) -> None:
        roomy = event.size.width >= ROOMY_SIZE[0] and event.size.height >= ROOMY_SIZE[1]
        self.set_class(roomy, "-roomy")
        detail = self._detail
        if detail.full != roomy:
            detail.full = roomy
            self._show_detail()

    def on_host_table_highlighted(self, event: HostTable.Highlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        if self._snapshot is None:
            return
        snap = self._snapshot
        self._detail.show(self.selected_view(), snap.hosts, snap.weights, snap.strategy)
