"""Yes / no question before something that cannot be undone from the dashboard."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from ._dialog import dialog_css


class ConfirmScreen(ModalScreen[bool]):
    """Returns True for yes. No is focused first, so a stray Enter changes nothing."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes", tooltip="Yes, do it."),
        Binding("n,escape,q", "answer(False)", "No", id="confirm.no", tooltip="No, leave it as it is."),
    ]
    DEFAULT_CSS = dialog_css("ConfirmScreen") + """
    ConfirmScreen > .dialog { width: 60; }
    """

    def __init__(self, title: str, question: str, yes_label: str = "Yes") -> None:
        super().__init__()
        self.title_text = title
        self.question = question
        self.yes_label = yes_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.question)
            with Horizontal(classes="dialog-buttons"):
                yield Button("No", id="no", compact=True)
                yield Button(f"{self.yes_label} (y)", id="yes", variant="error", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed, "#yes")
    def _yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def _no(self) -> None:
        self.dismiss(False)
