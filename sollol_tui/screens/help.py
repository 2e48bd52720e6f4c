"""Every key of the dashboard, with what it does."""

from __future__ import annotations

from typing import NamedTuple, Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from ._dialog import dialog_css


class KeyHelp(NamedTuple):
    key: str
    description: str
    tooltip: str


# Keys that work everywhere but are not the dashboard's own bindings.
GENERAL_KEYS: tuple[KeyHelp, ...] = (
    KeyHelp("↑ ↓", "Select a host", "Move the cursor in the host table (or scroll the focused panel); "
                                    "PgUp, PgDn, Home and End jump, a click picks a row."),
    KeyHelp("tab", "Next panel", "Move the focus to the next panel or field."),
    KeyHelp("esc", "Close / clear", "Close a dialog, or clear the request filter."),
    KeyHelp("ctrl+p", "Command palette", "Search every command by name."),
    KeyHelp("ctrl+q", "Quit", "Quit at once from anywhere (the gateway stops too)."),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close", id="help.close", tooltip="Close the help."),
    ]
    DEFAULT_CSS = dialog_css("HelpScreen") + """
    HelpScreen > .dialog { width: 100; }
    HelpScreen VerticalScroll { height: auto; max-height: 80vh; }
    HelpScreen #help-keys { grid-size: 3; grid-columns: 8 18 1fr; grid-gutter: 0 1; height: auto; }
    HelpScreen #help-keys Static { height: auto; }
    HelpScreen #help-keys .key { text-align: right; text-style: bold; color: $accent; }
    HelpScreen #help-keys .what { text-style: bold; }
    HelpScreen #help-keys .why { color: $text-muted; }
    """

    def __init__(self, keys: Sequence[KeyHelp]) -> None:
        super().__init__()
        self.keys = [*keys, *GENERAL_KEYS]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("SOLLOL keys (esc closes)", classes="dialog-title")
            with VerticalScroll():
                with Grid(id="help-keys"):
                    for k in self.keys:
                        yield Static(k.key, classes="key", markup=False)
                        yield Static(k.description, classes="what", markup=False)
                        yield Static(k.tooltip, classes="why", markup=False)

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()  # so the arrow keys scroll a long list

    def action_close(self) -> None:
        self.dismiss(None)
