"""The two header lines: where the gateway listens, how it routes, how busy it is, what runs beside it."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from sollol_core.snapshot import ClusterSnapshot, ComponentState

from .. import fmt

# Shown even before they exist, so the operator knows they are part of the picture (and off).
EXPECTED_COMPONENTS = ("ray", "dask")


def header_content(snapshot: ClusterSnapshot, *, show_uptime: bool = True, width: int = 0) -> Content:
    """Both header lines as styled content (no markup parsing: addresses may contain brackets).

    When the first line would not fit `width`, it sheds the words around the figures first, then the
    in-flight count, then the URL's scheme; the figures themselves stay.
    """
    for level in range(3):
        first = _first_line(snapshot, level=level, show_uptime=show_uptime)
        if not width or sum(len(p if isinstance(p, str) else p[0]) for p in first) <= width:
            break
    return Content.assemble(*first, "\n", *component_parts(snapshot.components))


def _first_line(snapshot: ClusterSnapshot, *, level: int, show_uptime: bool) -> list[str | tuple[str, str]]:
    url = snapshot.gateway_url or "(not listening)"
    if level >= 2:
        url = url.split("://", 1)[-1]
    parts: list[str | tuple[str, str]] = [(" SOLLOL ", "bold reverse $primary"), " ", (url, "bold")]
    if snapshot.demo:
        parts += [" ", (" DEMO ", "reverse $warning")]
    errors_style = "bold $error" if snapshot.errors_per_s > 0 else "$text-muted"
    parts += ["  "]
    if level == 0:
        parts += [("strategy ", "$text-muted")]
    parts += [
        (snapshot.strategy, "bold $accent"),
        "  ", (fmt.rate(snapshot.requests_per_s), "bold"), (" req/s", "$text-muted"),
        "  ", (fmt.rate(snapshot.errors_per_s), errors_style), (" err/s", "$text-muted"),
    ]
    if level == 0:
        parts += ["  ", (str(snapshot.active_requests), "bold"), (" active", "$text-muted")]
    if show_uptime:
        parts += ["  ", ("up ", "$text-muted"), (fmt.uptime(snapshot.uptime_s), "bold")]
    return parts


def component_parts(components: tuple[ComponentState, ...]) -> list[str | tuple[str, str]]:
    """Every component's state first, then the reasons of those that failed (long, so last)."""
    by_name = {c.name: c for c in components}
    for name in EXPECTED_COMPONENTS:
        by_name.setdefault(name, ComponentState(name, "off"))
    parts: list[str | tuple[str, str]] = [" "]
    for i, c in enumerate(by_name.values()):
        if i:
            parts.append("  ")
        parts += [(f"{c.name} ", "$text-muted"), (c.state, fmt.COMPONENT_STYLES.get(c.state, ""))]
    for c in by_name.values():
        if c.state == "failed" and c.detail:
            parts += ["  ", (f"· {c.name}: ", "$text-muted"), (c.detail, "$error")]
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
