"""The books' clients: at most max_tracked_clients kept apart, the rest `other`; idle ones forgotten."""

from __future__ import annotations

from sollol_core.config import SollolConfig
from sollol_core.request.tracked import OTHER, TrackedClients


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tracked(limit: int = 3, idle_s: float = 60.0) -> tuple[TrackedClients, Clock, list[str], set[str]]:
    clock = Clock()
    clients = TrackedClients(SollolConfig(max_tracked_clients=limit, tracked_client_idle_s=idle_s), clock)
    forgotten: list[str] = []
    busy: set[str] = set()
    clients.watch(lambda name: name in busy)
    clients.on_forget(forgotten.append)
    return clients, clock, forgotten, busy


def test_beyond_the_limit_clients_are_other():
    clients, _, _, _ = tracked(limit=3)
    assert [clients.name(n) for n in ("a", "b", "c", "d", "e", "a")] == ["a", "b", "c", OTHER, OTHER, "a"]
    assert len(clients) == 3 and clients.folded == 2 and OTHER in clients


def test_idle_clients_are_forgotten_and_make_room():
    clients, clock, forgotten, busy = tracked(limit=2, idle_s=60)
    clients.name("a")
    clients.name("b")
    clock.now += 30
    clients.name("b")
    assert clients.name("c") == OTHER  # nobody idle long enough yet
    clock.now += 31
    assert clients.name("c") == "c"  # a was idle for 61 s: its place goes to c
    assert forgotten == ["a"] and "a" not in clients
    busy.add("b")
    clock.now += 120
    gone = clients.sweep()
    assert "b" not in gone and "b" in clients  # something of b's is in flight: kept
    assert set(gone) == {"c", OTHER}


def test_a_lowered_limit_sheds_the_longest_idle_first():
    clients, clock, forgotten, _ = tracked(limit=4)
    for name in ("a", "b", "c", "d"):
        clients.name(name)
        clock.now += 1
    clients.config.max_tracked_clients = 2
    clients.sweep()
    assert forgotten == ["a", "b"] and len(clients) == 2
