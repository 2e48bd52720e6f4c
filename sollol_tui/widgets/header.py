"""The two header lines: where the gateway listens, how it routes, how busy it is and what waits in its queue;
then the demo's simulated clients (in --demo) and what runs beside the gateway."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from sollol_core.observability.snapshot import ClusterSnapshot, ComponentState, QueueView

from .. import fmt

# Shown even before they exist, so the operator knows they are part of the picture (and off).
EXPECTED_COMPONENTS = ("ray", "dask")
# The gateway queue's priority classes, highest first; the header shows each one's depth by its initial.
CLASSES = ("high", "interactive", "batch")
LEVELS = 6  # how many ways of shortening the first line header_content tries


def header_content(snapshot: ClusterSnapshot, *, show_uptime: bool = True, width: int = 0) -> Content:
    """Both header lines as styled content (no markup parsing: addresses may contain brackets).

    When the first line would not fit `width`, it sheds the words around the figures first (and the in-flight
    count), then the URL's scheme, then the uptime, then shortens "queue" to "q"; the rates, the strategy and
    the queue depths stay; last, single spaces between the groups. The second line sheds the simulated clients' description before any component.
    """
    for level in range(LEVELS):
        first = _first_line(snapshot, level=level, show_uptime=show_uptime)
        if not width or _length(first) <= width:
            break
    states, reasons = component_states(snapshot.components), failure_reasons(snapshot.components)
    for level in range(3):  # the failure reasons come last and may be cut: they are not measured
        sim = sim_parts(snapshot.sim_clients, level=level)
        if not width or _length(sim) + _length(states) <= width:
            break
    return Content.assemble(*first, "\n", *sim, *states, *reasons)


def _length(parts: list[str | tuple[str, str]]) -> int:
    return sum(len(p if isinstance(p, str) else p[0]) for p in parts)


def queue_parts(queue: QueueView, *, short: bool = False) -> list[str | tuple[str, str]]:
    """'queue h0 i3 b120': requests waiting in the gateway per class (a waiting class stands out)."""
    parts: list[str | tuple[str, str]] = [("q " if short else "queue ", "$text-muted")]
    names = [*CLASSES, *sorted(c for c in queue.depth if c not in CLASSES)]
    for i, name in enumerate(names):
        depth = int(queue.depth.get(name, 0))
        if i:
            parts.append(" ")
        style = "$text-muted" if not depth else ("bold" if name == "batch" else "bold $warning")
        parts += [(name[0] if name in CLASSES else f"{name} ", "$text-muted"), (str(depth), style)]
    return parts


def sim_parts(description: str | None, *, level: int = 0) -> list[str | tuple[str, str]]:
    """The demo's simulated clients, first on the second line: 'sim clients on: 6 chats, ...' (level 0),
    'sim clients on' (1), 'sim on' (2); nothing when there are none."""
    if description is None:
        return []
    state, sep, rest = fmt.clean(description).partition(":")
    style = "bold $success" if state.strip() == "on" else "$text-muted"
    parts: list[str | tuple[str, str]] = [" ", ("sim " if level >= 2 else "sim clients ", "$text-muted"),
                                          (state, style)]
    if level == 0:
        parts.append((sep + rest, ""))
    return [*parts, " "]


def _first_line(snapshot: ClusterSnapshot, *, level: int, show_uptime: bool) -> list[str | tuple[str, str]]:
    url = snapshot.gateway_url or "(not listening)"
    if level >= 2:
        url = url.split("://", 1)[-1]
    show_uptime = show_uptime and level < 3
    gap = " " if level >= 5 else "  "
    parts: list[str | tuple[str, str]] = [(" SOLLOL ", "bold reverse $primary"), " ", (url, "bold")]
    if snapshot.demo:
        parts += [" ", (" DEMO ", "reverse $warning")]
    errors_style = "bold $error" if snapshot.errors_per_s > 0 else "$text-muted"
    parts += [gap]
    if level == 0:
        parts += [("strategy ", "$text-muted")]
    parts += [
        (snapshot.strategy, "bold $accent"),
        gap, (fmt.rate(snapshot.requests_per_s), "bold"), (" req/s", "$text-muted"),
        gap, (fmt.rate(snapshot.errors_per_s), errors_style), (" err/s", "$text-muted"),
    ]
    if level == 0:
        parts += [gap, (str(snapshot.active_requests), "bold"), (" active", "$text-muted")]
    parts += [gap, *queue_parts(snapshot.queue, short=level >= 4)]
    if show_uptime:
        parts += [gap, ("up ", "$text-muted"), (fmt.uptime(snapshot.uptime_s), "bold")]
    return parts


def component_parts(components: tuple[ComponentState, ...]) -> list[str | tuple[str, str]]:
    """Every component's state first, then the reasons of those that failed (long, so last)."""
    return component_states(components) + failure_reasons(components)


def _by_name(components: tuple[ComponentState, ...]) -> dict[str, ComponentState]:
    by_name = {c.name: c for c in components}
    for name in EXPECTED_COMPONENTS:
        by_name.setdefault(name, ComponentState(name, "off"))
    return by_name


def component_states(components: tuple[ComponentState, ...]) -> list[str | tuple[str, str]]:
    parts: list[str | tuple[str, str]] = []
    for c in _by_name(components).values():
        parts.append("  " if parts else " ")
        parts += [(f"{c.name} ", "$text-muted"), (c.state, fmt.COMPONENT_STYLES.get(c.state, ""))]
    return parts


def failure_reasons(components: tuple[ComponentState, ...]) -> list[str | tuple[str, str]]:
    parts: list[str | tuple[str, str]] = []
    for c in _by_name(components).values():
        if c.state == "failed" and c.detail:
            parts += ["  ", (f"· {c.name}: ", "$text-muted"), (fmt.clean(c.detail), "$error")]
    return parts


class ClusterHeader(Static):
    """Renders only when the text changes: a poll that finds nothing new costs no repaint."""

    DEFAULT_CSS = """
    ClusterHeader {
        height: 2;
        width: 1fr;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, *, show_uptime: bool = True, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.show_uptime = show_uptime
        self._last: Content | None = None
        self._snapshot: ClusterSnapshot | None = None

    def on_resize(self) -> None:
        if self._snapshot is not None:
            self.show(self._snapshot)

    def show(self, snapshot: ClusterSnapshot) -> None:
        self._snapshot = snapshot
        content = header_content(snapshot, show_uptime=self.show_uptime, width=self.size.width)
        if self._last is None or content.plain != self._last.plain or content.spans != self._last.spans:
            self._last = content
            self.update(content, layout=False)  # always two lines: no need to re-arrange the screen
