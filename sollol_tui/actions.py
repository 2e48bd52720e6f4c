"""What the dashboard's keys do: each action calls the SOLLOL's public API, then shows the result.

A mixin of SollolApp, kept apart from the data flow (polling, feeds) that app.py owns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Optional

from textual import work
from textual.notifications import SeverityLevel

from sollol_core.config import STRATEGIES

from .fmt import clean
from .screens.add_host import AddHostScreen, NewHost
from .screens.confirm import ConfirmScreen
from .screens.help import HelpScreen, KeyHelp
from .screens.slots import SlotsChoice, SlotsScreen, slots_text
from .screens.theme_picker import ThemePickerScreen
from .screens.weights import WeightsScreen

if TYPE_CHECKING:
    from pathlib import Path

    from textual.app import App
    from textual.binding import Binding

    from sollol_core.observability.snapshot import ClusterSnapshot
    from sollol_core.service import SOLLOL

    from .screens.dashboard import DashboardScreen

    _Base = App[int]
else:
    _Base = object

log = logging.getLogger("sollol.tui")

_SIM_TOGGLE = threading.Lock()


class OperatorActions(_Base):
    """The action_* methods of SollolApp. Needs from the app what is declared here."""

    sollol: SOLLOL
    snapshot: Optional[ClusterSnapshot]
    save_path: Optional[Path]
    stop_on_quit: bool
    _quitting: bool

    if TYPE_CHECKING:
        @property
        def dashboard(self) -> DashboardScreen: ...
        def refresh_now(self) -> None: ...
        def dashboard_bindings(self) -> list[Binding]: ...
        def theme_names(self) -> list[str]: ...
        def _detach(self) -> None: ...

    def _selected_host(self) -> Optional[str]:
        address = self.dashboard.host_table.selected_address
        if address is None:
            self.notify("No host selected: add one with a.", severity="warning")
        return address

    def _fail(self, what: str, error: Exception) -> None:
        self.notify(clean(f"{what}: {error}"), severity="error", timeout=8, markup=False)

    # actions --------------------------------------------------------------------------------------
    def action_toggle_drain(self) -> None:
        address = self._selected_host()
        if address is None:
            return
        try:
            state = self.sollol.toggle_drain(address)
        except (KeyError, ValueError) as e:
            self._fail(f"drain {address}", e)
            return
        if state == "draining":
            self.notify(f"{address} is draining: it finishes what it has and takes nothing new.")
        else:
            self.notify(f"{address} is back in rotation ({state}).")
        self.refresh_now()

    def action_change_priority(self, delta: int) -> None:
        address = self._selected_host()
        view = self.dashboard.selected_view()
        if address is None or view is None:
            return
        new = max(0, view.priority + delta)
        if new == view.priority:
            self.notify(f"{address} already has priority 0 (tried first).", severity="warning")
            return
        try:
            self.sollol.set_priority(address, new)
        except (KeyError, ValueError) as e:
            self._fail(f"priority of {address}", e)
            return
        self.notify(f"{address}: priority {view.priority} → {new}")
        self.refresh_now()

    def action_edit_weights(self) -> None:
        self.push_screen(WeightsScreen(self.sollol.router.weights.model_dump()), self._apply_weights)

    def _apply_weights(self, weights: Optional[dict[str, float]]) -> None:
        if weights is None:
            return
        try:
            self.sollol.set_weights(**weights)
        except ValueError as e:
            self._fail("weights", e)
            return
        self.notify("Weights applied: " + ", ".join(f"{k} {v:g}" for k, v in weights.items()))
        self.refresh_now()

    def action_edit_slots(self) -> None:
        address = self._selected_host()
        if address is None:
            return
        settings = self.sollol.config.host_settings.get(address)
        own = settings.num_parallel if settings is not None else None
        name = self.dashboard.host_table.names.get(address, address)
        self.push_screen(SlotsScreen(address, name, own, self.sollol.config.default_num_parallel),
                         partial(self._apply_slots, address))

    def _apply_slots(self, address: str, choice: Optional[SlotsChoice]) -> None:
        if choice is None:
            return
        before = self.sollol.num_parallel(address)
        try:
            self.sollol.set_num_parallel(address, choice.slots)
        except (KeyError, ValueError) as e:
            self._fail(f"slots of {address}", e)
            return
        after = self.sollol.num_parallel(address)
        default = " (the default)" if choice.slots is None else ""
        self.notify(f"{address}: slots {slots_text(before)} → {slots_text(after)}{default}")
        self.refresh_now()

    def action_toggle_sim_clients(self) -> None:
        self._run_toggle_sim_clients()

    @work(thread=True, group="sim-clients")
    def _run_toggle_sim_clients(self) -> None:
        """In a thread: stopping the clients may wait for the requests they have in flight. One toggle at a
        time, so two quick presses start and then stop them rather than racing."""
        try:
            with _SIM_TOGGLE:
                running = self.sollol.toggle_sim_clients()
        except Exception as e:  # noqa: BLE001 - shown to the operator
            self.call_from_thread(self._fail, "simulated clients", e)
            return
        self.call_from_thread(self._sim_clients_toggled, running)

    def _sim_clients_toggled(self, running: Optional[bool]) -> None:
        if running is None:
            self.notify("no simulated clients (only in --demo)", severity="warning")
            return
        self.refresh_now()
        described = (self.snapshot.sim_clients or "") if self.snapshot is not None else ""
        state, _, rest = described.partition(":")
        if running:
            self.notify(f"Simulated clients started: {rest.strip()}." if state == "on" and rest.strip()
                        else "Simulated clients started.")
        else:
            self.notify("Simulated clients stopped.")

    def action_cycle_strategy(self) -> None:
        current = self.sollol.router.strategy_name
        following = STRATEGIES[(STRATEGIES.index(current) + 1) % len(STRATEGIES)] if current in STRATEGIES \
            else STRATEGIES[0]
        try:
            self.sollol.set_strategy(following)
        except ValueError as e:
            self._fail("strategy", e)
            return
        self.notify(f"Routing strategy: {current} → {following}")
        self.refresh_now()

    def action_show_tab(self, tab: str) -> None:
        self.dashboard.show_tab(tab)

    def action_filter_requests(self) -> None:
        self.dashboard.open_filter()

    def action_add_host(self) -> None:
        existing = {h.host for h in self.snapshot.hosts} if self.snapshot else set()
        self.push_screen(AddHostScreen(existing), self._add_host)

    def _add_host(self, new: Optional[NewHost]) -> None:
        if new is None:
            return
        try:
            address = self.sollol.add_host(new.address, priority=new.priority, weight=new.weight)
        except (KeyError, ValueError) as e:
            self._fail(f"add {new.address}", e)
            return
        self.notify(f"Added {address} (priority {new.priority}, weight {new.weight:g}).")
        self.refresh_now()
        self.dashboard.host_table.select_address(address)

    def action_remove_host(self) -> None:
        address = self._selected_host()
        if address is None:
            return
        question = (f"Remove {address} from the cluster? Requests it is serving finish; "
                    f"nothing new goes to it. Save with ctrl+s to make it permanent.")
        self.push_screen(ConfirmScreen("Remove host", question, "Remove"), partial(self._remove_host, address))

    def _remove_host(self, address: str, yes: Optional[bool]) -> None:
        if not yes:
            return
        try:
            self.sollol.remove_host(address)
        except (KeyError, ValueError) as e:
            self._fail(f"remove {address}", e)
            return
        self.notify(f"Removed {address}.")
        self.refresh_now()

    def action_trigger_batch(self) -> None:
        trigger = getattr(self.sollol, "trigger_batch", None)
        if trigger is None:
            self.notify("Batch queue not running.", severity="warning")
            return
        self._run_trigger(trigger)

    @work(thread=True, exclusive=True, group="batch")
    def _run_trigger(self, trigger: Callable[[], Any]) -> None:
        """In a thread: the core may wait for its loop to queue the batch."""
        try:
            result = trigger()
        except Exception as e:  # noqa: BLE001 - shown to the operator
            self.call_from_thread(self._fail, "batch", e)
            return
        message, severity = describe_trigger(result)
        self.call_from_thread(self.notify, message, severity=severity)

    def action_save_config(self) -> None:
        try:
            path, backup = self.sollol.save_config(self.save_path)
        except (OSError, ValueError) as e:
            self._fail("save", e)
            return
        kept = f" (previous file kept as {backup.name})" if backup else ""
        self.notify(f"Saved the running configuration to {path}{kept}.")

    def action_pick_theme(self) -> None:
        self.push_screen(ThemePickerScreen(self.theme_names(), self.theme), self._theme_picked)

    def _theme_picked(self, name: Optional[str]) -> None:
        if not name:
            return
        self.theme = name
        try:
            self.sollol.update_config(theme=name)
        except ValueError as e:
            self._fail("theme", e)
            return
        self.notify(f"Theme {name} (ctrl+s saves it in the configuration).")

    def action_help(self) -> None:
        keys = [KeyHelp(b.key_display or b.key, b.description, b.tooltip) for b in self.dashboard_bindings()]
        self.push_screen(HelpScreen(keys))

    async def action_quit(self) -> None:
        """Graceful: the gateway stops taking requests and lets those in flight finish, then the app ends."""
        if self._quitting:
            return
        self._quitting = True
        if self.stop_on_quit and self.sollol.running:
            self.notify("Stopping the gateway…", timeout=30)
            started = time.monotonic()
            await asyncio.to_thread(self.sollol.stop)
            log.info("gateway stopped in %.1f s", time.monotonic() - started)
        self._detach()
        self.exit(0)


def describe_trigger(result: Any) -> tuple[str, SeverityLevel]:
    """What `trigger_batch()` answered, in words: {"triggered": bool, "queued": n, "reason": ...}."""
    if isinstance(result, dict):
        if result.get("triggered") is False:
            return f"Batch not started: {result.get('reason') or 'nothing to do'}.", "warning"
        queued = result.get("queued")
        if queued is not None:
            return f"Batch started: {queued} document{'s' if queued != 1 else ''} queued.", "information"
        return "Batch started.", "information"
    if result in (None, True):
        return "Batch started.", "information"
    return f"Batch started: {result}.", "information"
