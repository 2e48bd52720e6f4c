"""The gateway queue: what waits per priority class and for how long, what it admitted, turned away, let expire
or lost to a client that left; then every client with its class and counts."""

from __future__ import annotations

from typing import Optional

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from sollol_core.observability.snapshot import ClientView, QueueView

from .. import fmt
from .header import CLASSES

Parts = list[str | tuple[str, str]]

CLIENT_COLUMNS = (("client", 20), ("class", 12), ("requests", 9), ("waiting", 8), ("in flight", 10),
                  ("rejected", 9))


def class_lines(queue: QueueView) -> Parts:
    """One line per class: requests waiting and how long the oldest has waited."""
    parts: Parts = [(f"{'class':<12}{'waiting':>8}{'oldest':>9}", "$text-muted")]
    names = [*CLASSES, *sorted(c for c in queue.depth if c not in CLASSES)]
    for name in names:
        depth = int(queue.depth.get(name, 0))
        oldest = queue.oldest_wait_s.get(name)
        style = "$text-muted" if not depth else ("bold" if name == "batch" else "bold $warning")
        parts += ["\n", f"{name:<12}", (f"{depth:>8}", style),
                  f"{fmt.seconds(oldest) if depth and oldest is not None else '—':>9}"]
        why = queue.why.get(name) if depth else None
        if why:
            parts += [(f"  {why}", "$text-muted")]
    if queue.reserved_for:
        parts += ["\n", ("interactive reserve holds for ", "$text-muted"), (", ".join(queue.reserved_for), "bold"),
                  (": batch requests leave a slot of each host with two or more", "$text-muted")]
    return parts


def totals_line(queue: QueueView) -> Parts:
    """'admitted 1234  rejected 5 (queue_full 3, timeout 2)  expired 2  cancelled 1'."""
    rejected = sum(int(v) for v in queue.rejected.values())
    parts: Parts = [("admitted ", "$text-muted"), (str(queue.admitted), "bold"),
                    ("  rejected ", "$text-muted"), (str(rejected), "bold $error" if rejected else "bold")]
    if queue.rejected:
        reasons = ", ".join(f"{reason.replace('_', ' ')} {count}" for reason, count in sorted(queue.rejected.items()))
        parts += [(f" ({reasons})", "")]
    parts += [("  expired ", "$text-muted"), (str(queue.expired), "bold $warning" if queue.expired else "bold"),
              ("  cancelled ", "$text-muted"), (str(queue.cancelled), "bold")]
    return parts


def client_row(client: ClientView) -> str:
    cells = (fmt.clean(client.name), client.priority, client.requests, client.waiting, client.in_flight,
             client.rejected)
    out = []
    for (title, width), value in zip(CLIENT_COLUMNS, cells):
        out.append(fmt.fit(str(value), width - 1, right=not isinstance(value, str)) + " ")  # numbers to the right
    return "".join(out).rstrip()


def clients_lines(clients: tuple[ClientView, ...]) -> Parts:
    header = "".join(title.ljust(w) if i < 2 else title.rjust(w - 1) + " "
                     for i, (title, w) in enumerate(CLIENT_COLUMNS)).rstrip()
    parts: Parts = [(header, "$text-muted")]
    if not clients:
        parts += ["\n", ("no client has sent a request yet", "$text-muted")]
    for client in sorted(clients, key=lambda c: (-c.requests, c.name)):
        parts += ["\n", client_row(client)]
    return parts


def queue_content(queue: QueueView, clients: tuple[ClientView, ...]) -> Content:
    return Content.assemble(*class_lines(queue), "\n", *totals_line(queue), "\n\n", *clients_lines(clients))


class QueuePanel(VerticalScroll):
    """Scrolls when there are more clients than lines; redrawn only when the queue or a client changed."""

    DEFAULT_CSS = """
    QueuePanel { height: 1fr; padding: 0 1; scrollbar-size-vertical: 1; }
    QueuePanel #queue-text { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, *, id: Optional[str] = None) -> None:
        super().__init__(id=id)
        self._last: Optional[tuple[QueueView, tuple[ClientView, ...]]] = None

    def compose(self) -> ComposeResult:
        yield Static(queue_content(QueueView(), ()), id="queue-text")

    @property
    def text(self) -> str:
        """What the panel shows, as plain text."""
        return queue_content(*self._last).plain if self._last else queue_content(QueueView(), ()).plain

    def show(self, queue: QueueView, clients: tuple[ClientView, ...]) -> None:
        key = (queue, clients)
        if key == self._last:
            return
        lines_changed = self._last is None or len(clients) != len(self._last[1]) or \
            len(queue.depth) != len(self._last[0].depth)
        self._last = key
        self.query_one("#queue-text", Static).update(queue_content(queue, clients), layout=lines_changed)
