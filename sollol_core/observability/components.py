"""ComponentBoard: the state of each background part (gateway, executor, Ray, Dask, batch, metrics).

Written from the core loop and from the threads that start Ray; read by the dashboard's snapshot, by
/api/stats and by get_status, each in its own thread: every access goes through one lock, and readers get
copies, so none sees a half-written entry or a dict changing under its iteration.
"""

from __future__ import annotations

import threading
from typing import Optional

from .snapshot import ComponentState


class ComponentBoard:
    """name -> ComponentState, in the order the components first reported."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, ComponentState] = {}

    def set(self, name: str, state: str, detail: str = "") -> None:
        """The component's state now ("off" / "starting" / "ready" / "failed") and what it says about it."""
        entry = ComponentState(name, state, detail)
        with self._lock:
            self._states[name] = entry

    def get(self, name: str) -> Optional[ComponentState]:
        with self._lock:
            return self._states.get(name)

    def view(self) -> tuple[ComponentState, ...]:
        with self._lock:
            return tuple(self._states.values())

    def as_dict(self) -> dict[str, dict[str, str]]:
        """{name: {"state", "detail"}}: the shape of get_status's and /api/stats's "components"."""
        return {c.name: {"state": c.state, "detail": c.detail} for c in self.view()}

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)
