"""Add a host: address (validated like the config file does it), priority and weight."""

from __future__ import annotations

from typing import NamedTuple, Optional

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from sollol_core.config import normalize_host

from ._dialog import dialog_css


class NewHost(NamedTuple):
    address: str
    priority: int
    weight: float


def parse_new_host(address: str, priority: str, weight: str, existing: set[str]) -> tuple[Optional[NewHost], list[str]]:
    problems: list[str] = []
    normalized = ""
    try:
        normalized = normalize_host(address)
    except ValueError as e:
        problems.append(f"address: {e}")
    if normalized and normalized in existing:
        problems.append(f"address: {normalized} is already in the cluster")
    prio = 0
    try:
        prio = int(priority.strip() or "0")
        if prio < 0:
            raise ValueError
    except ValueError:
        problems.append(f"priority: {priority!r} is not a whole number >= 0")
    w = 1.0
    try:
        w = float(weight.strip() or "1")
        if not w > 0:
            raise ValueError
    except ValueError:
        problems.append(f"weight: {weight!r} is not a number > 0")
    if problems:
        return None, problems
    return NewHost(normalized, prio, w), []


class AddHostScreen(ModalScreen[Optional[NewHost]]):
    """Returns the host to add, or None when cancelled."""

    BINDINGS = [Binding("escape,q", "cancel", "Cancel", id="add-host.cancel", tooltip="Close without adding.")]
    DEFAULT_CSS = dialog_css("AddHostScreen") + """
    AddHostScreen .field { height: auto; margin-bottom: 1; }
    AddHostScreen .field Label { width: 10; text-style: bold; }
    AddHostScreen .field Input { width: 1fr; background: $boost; }
    """

    def __init__(self, existing: set[str]) -> None:
        super().__init__()
        self.existing = set(existing)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Add an Ollama host", classes="dialog-title")
            with Horizontal(classes="field"):
                yield Label("address")
                yield Input(placeholder="host:port (port 11434 when left out)", id="address", compact=True)
            with Horizontal(classes="field"):
                yield Label("priority")
                yield Input("0", id="priority", placeholder="0 is tried first", restrict=r"[0-9]*", compact=True)
            with Horizontal(classes="field"):
                yield Label("weight")
                yield Input("1", id="weight", placeholder="capacity multiplier > 0", restrict=r"[0-9.eE+-]*",
                            compact=True)
            yield Static("", id="add-host-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Add", id="add", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#address", Input).focus()

    def submit(self) -> None:
        new, problems = parse_new_host(self.query_one("#address", Input).value,
                                       self.query_one("#priority", Input).value,
                                       self.query_one("#weight", Input).value, self.existing)
        if new is None:
            self.query_one("#add-host-error", Static).update("\n".join(problems))
            return
        self.dismiss(new)

    @on(Button.Pressed, "#add")
    def _add_pressed(self) -> None:
        self.submit()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.submit()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
