"""The clients the books keep apart, bounded.

Each client gets its own entry in the gateway queue's books (requests, in flight, rejected, its deficit in
the fair share), in /api/stats and in the Prometheus labels. Without API keys a client is its address, so
an unbounded number of addresses would grow each of them without bound. `TrackedClients` names every
client request: its own name while at most `max_tracked_clients` clients are kept, else `other`, which
stands for all the rest. A client with nothing in flight or waiting that has sent nothing for
`tracked_client_idle_s` is forgotten: its place goes to the next newcomer, and every book that holds it
(`on_forget`) drops its entry.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from ..config import SollolConfig

OTHER = "other"
SWEEP_EVERY = 1024  # named requests between two sweeps for idle clients (besides the sweep when full)


class TrackedClients:
    """Names clients for the books; at most config.max_tracked_clients of them besides `other`."""

    def __init__(self, config: SollolConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._seen: dict[str, float] = {}  # name -> when it last sent a request (`other` not among them)
        self._other: Optional[float] = None  # when a request was last named `other`
        self._busy: Optional[Callable[[str], bool]] = None
        self._forget: list[Callable[[str], None]] = []
        self._calls = 0
        self.folded = 0  # requests named `other` because the books were full

    def watch(self, busy: Callable[[str], bool]) -> None:
        """`busy(name)`: whether the client has requests waiting or in flight (it is never forgotten then)."""
        self._busy = busy

    def on_forget(self, forget: Callable[[str], None]) -> None:
        """`forget(name)` is called for each client dropped from the books."""
        self._forget.append(forget)

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, name: object) -> bool:
        return name in self._seen or (name == OTHER and self._other is not None)

    def name(self, name: str) -> str:
        """The name the books use for a request of client `name`: its own, or `other`."""
        now = self.clock()
        seen = self._seen
        self._calls += 1
        if name in seen:
            seen[name] = now
            if self._calls >= SWEEP_EVERY:
                self.sweep(now)
            return name
        if name == OTHER or len(seen) >= self.config.max_tracked_clients:
            if name != OTHER:
                self.sweep(now)
            if name == OTHER or len(seen) >= self.config.max_tracked_clients:
                self.folded += name != OTHER
                self._other = now
                return OTHER
        seen[name] = now
        return name

    def sweep(self, now: Optional[float] = None) -> list[str]:
        """Forget the clients idle for tracked_client_idle_s (and those beyond a lowered limit, oldest first,
        when idle); returns their names."""
        now = self.clock() if now is None else now
        self._calls = 0
        idle_s = self.config.tracked_client_idle_s
        busy = self._busy
        gone = [n for n, t in self._seen.items() if now - t >= idle_s and (busy is None or not busy(n))]
        for n in gone:
            del self._seen[n]
        excess = len(self._seen) - self.config.max_tracked_clients
        if excess > 0:  # the limit was lowered: the longest idle go first, if nothing of theirs is in flight
            for n, _ in sorted(self._seen.items(), key=lambda item: item[1]):
                if excess <= 0:
                    break
                if busy is None or not busy(n):
                    del self._seen[n]
                    gone.append(n)
                    excess -= 1
        if self._other is not None and now - self._other >= idle_s and (busy is None or not busy(OTHER)):
            self._other = None
            gone.append(OTHER)
        for n in gone:
            for forget in self._forget:
                forget(n)
        return gone
