"""Pick a theme; the highlighted one is previewed at once, Esc puts the previous one back."""

from __future__ import annotations

from typing import Optional, Sequence

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from ._dialog import dialog_css


class ThemePickerScreen(ModalScreen[Optional[str]]):
    """Returns the chosen theme name, or None when cancelled (the original theme is restored)."""

    BINDINGS = [Binding("escape,q", "cancel", "Cancel", id="theme.cancel", tooltip="Keep the current theme.")]
    DEFAULT_CSS = dialog_css("ThemePickerScreen") + """
    ThemePickerScreen > .dialog { width: 48; }
    ThemePickerScreen OptionList { height: auto; max-height: 16; }
    """

    def __init__(self, names: Sequence[str], current: str) -> None:
        super().__init__()
        self.names = list(names)
        self.original = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Theme (Enter picks, Esc cancels)", classes="dialog-title")
            yield OptionList(*(Option(n, id=n) for n in self.names), id="themes")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        if self.original in self.names:
            options.highlighted = self.names.index(self.original)
        options.focus()

    @on(OptionList.OptionHighlighted)
    def _preview(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self.app.theme = event.option.id

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.app.theme = self.original
        self.dismiss(None)
