"""Command palette (ctrl+p): every dashboard key is also a command, found by its name or its tooltip."""

from __future__ import annotations

from functools import partial
from typing import Iterable, Protocol, runtime_checkable

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider


@runtime_checkable
class HasDashboardBindings(Protocol):
    """What the palette needs of the app: the dashboard's own key bindings (ids start with ``sollol.``)."""

    def dashboard_bindings(self) -> list[Binding]: ...


def command_bindings(app: object) -> Iterable[Binding]:
    """The dashboard's own key bindings; none for an app that has no dashboard."""
    return app.dashboard_bindings() if isinstance(app, HasDashboardBindings) else ()


class SollolCommands(Provider):
    """One command per dashboard key; running it does exactly what the key does."""

    def _commands(self) -> list[tuple[str, str, str]]:
        out = []
        for b in command_bindings(self.app):
            key = b.key_display or b.key
            out.append((f"{b.description} ({key})", b.tooltip, b.action))
        return out

    def _run(self, action: str) -> None:
        app = self.app
        app.call_later(app.run_action, action)

    async def discover(self) -> Hits:
        for title, help_text, action in self._commands():
            yield DiscoveryHit(title, partial(self._run, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, action in self._commands():
            score = max(matcher.match(title), matcher.match(help_text) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, action), help=help_text)
