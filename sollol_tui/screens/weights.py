"""Edit the weights of the `performance` score (every RoutingWeights field); applied live by the caller
(SOLLOL.set_weights)."""

from __future__ import annotations

from typing import Optional

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.validation import Number
from textual.widgets import Button, Input, Label, Static

from sollol_core.config import RoutingWeights

from ._dialog import dialog_css

WEIGHT_NAMES: tuple[str, ...] = tuple(RoutingWeights.model_fields)


def parse_weights(values: dict[str, str]) -> tuple[Optional[dict[str, float]], list[str]]:
    """Text of each box -> validated weights, or None and the problems (one line each)."""
    problems: list[str] = []
    parsed: dict[str, float] = {}
    for name in WEIGHT_NAMES:
        raw = values.get(name, "").strip()
        try:
            parsed[name] = float(raw)
        except ValueError:
            problems.append(f"{name}: {raw!r} is not a number")
    if problems:
        return None, problems
    try:
        RoutingWeights.model_validate(parsed)
    except ValidationError as e:
        return None, [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
    return parsed, []


class WeightsScreen(ModalScreen[Optional[dict[str, float]]]):
    """Returns the new weights, or None when cancelled."""

    BINDINGS = [
        Binding("escape,q", "cancel", "Cancel", id="weights.cancel", tooltip="Close without changing the weights."),
        Binding("ctrl+r", "defaults", "Defaults", id="weights.defaults",
                tooltip="Fill in the default weights (not applied until Apply)."),
    ]
    DEFAULT_CSS = dialog_css("WeightsScreen") + """
    WeightsScreen .weight-row { height: auto; }
    WeightsScreen .weight-row Label { width: 14; text-style: bold; }
    WeightsScreen .weight-row Input { width: 10; background: $boost; }
    WeightsScreen .weight-help { width: 1fr; color: $text-muted; padding: 0 1; }
    WeightsScreen VerticalScroll { height: auto; max-height: 18; }
    """

    def __init__(self, weights: dict[str, float]) -> None:
        super().__init__()
        self.initial = dict(weights)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Scoring weights (performance strategy; lower score wins)", classes="dialog-title")
            with VerticalScroll():
                for name in WEIGHT_NAMES:
                    with Horizontal(classes="weight-row"):
                        yield Label(name)
                        yield Input(f"{self.initial.get(name, 0.0):g}", id=f"weight-{name}",
                                    validators=[Number(minimum=0, failure_description="a number >= 0")],
                                    restrict=r"[0-9.eE+-]*", compact=True)
                        yield Static(RoutingWeights.model_fields[name].description or "", classes="weight-help")
            yield Static("", id="weights-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", compact=True)
                yield Button("Apply", id="apply", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one(f"#weight-{WEIGHT_NAMES[0]}", Input).focus()

    def values(self) -> dict[str, str]:
        return {name: self.query_one(f"#weight-{name}", Input).value for name in WEIGHT_NAMES}

    def apply(self) -> None:
        weights, problems = parse_weights(self.values())
        if weights is None:
            self.query_one("#weights-error", Static).update("\n".join(problems))
            return
        self.dismiss(weights)

    @on(Button.Pressed, "#apply")
    def _apply_pressed(self) -> None:
        self.apply()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.apply()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_defaults(self) -> None:
        for name, value in RoutingWeights().model_dump().items():
            self.query_one(f"#weight-{name}", Input).value = f"{value:g}"
