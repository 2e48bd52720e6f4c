"""Change one host's slots (its OLLAMA_NUM_PARALLEL): a whole number, or empty for the default.

The gateway never has more requests in flight on a (host, model) than its slots; the rest wait in the
gateway, where they can still go to whichever host frees first. Applied live by the caller
(SOLLOL.set_num_parallel); ctrl+s saves it with the host's settings.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from sollol_core.config import HostSettings

from ._dialog import dialog_css


class SlotsChoice(NamedTuple):
    """The operator's answer: a number of slots, or None for the default."""

    slots: Optional[int]


def slots_text(slots: Optional[int]) -> str:
    return "unlimited" if slots is None else str(slots)


def parse_slots(text: str) -> tuple[Optional[SlotsChoice], list[str]]:
    """The box's text -> a choice ('' is the default), or None and the problems, checked as the config does."""
    raw = text.strip()
    if not raw:
        return SlotsChoice(None), []
    try:
        value = int(raw)
    except ValueError:
        return None, [f"{raw!r} is not a whole number (leave it empty for the default)"]
    try:
        HostSettings(num_parallel=value)
    except ValidationError as e:
        return None, [f"{value}: {err['msg']}" for err in e.errors()]
    return SlotsChoice(value), []


class SlotsScreen(ModalScreen[Optional[SlotsChoice]]):
    """Returns the new slots, or None when cancelled.

    own: the host's own setting (None when it uses the default); default: default_num_parallel.
    """

    BINDINGS = [Binding("escape,q", "cancel", "Cancel", id="slots.cancel", tooltip="Close without changing the slots.")]
    DEFAULT_CSS = dialog_css("SlotsScreen") + """
    SlotsScreen .field { height: auto; }
    SlotsScreen .field Label { width: 10; text-style: bold; }
    SlotsScreen .field Input { width: 1fr; background: $boost; }
    SlotsScreen .slots-help { color: $text-muted; margin-bottom: 1; }
    """

    def __init__(self, address: str, name: str, own: Optional[int], default: Optional[int]) -> None:
        super().__init__()
        self.address = address
        self.host_name = name
        self.own = own
        self.default = default

    def compose(self) -> ComposeResult:
        title = self.address if self.host_name == self.address else f"{self.host_name} ({self.address})"
        current = slots_text(self.own if self.own is not None else self.default)
        origin = "its own setting" if self.own is not None else "the default"
        with Vertical(classes="dialog"):
            yield Label(f"Slots of {title}", classes="dialog-title", markup=False)
            yield Static(f"Requests each loaded model runs at once: set it to the host's OLLAMA_NUM_PARALLEL. "
                         f"Now {current} ({origin}).", classes="slots-help", markup=False)
            with Horizontal(classes="field"):
                yield Label("slots")
                yield Input("" if self.own is None else str(self.own), id="slots",
                            placeholder=f"empty: the default ({slots_text(self.default)})",
                            restrict=r"[0-9]*", compact=True)
            yield Static("", id="slots-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Apply", id="apply", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#slots", Input).focus()

    def apply(self) -> None:
        choice, problems = parse_slots(self.query_one("#slots", Input).value)
        if choice is None:
            self.query_one("#slots-error", Static).update("\n".join(problems))
            return
        self.dismiss(choice)

    @on(Button.Pressed, "#apply")
    def _apply_pressed(self) -> None:
        self.apply()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.apply()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
