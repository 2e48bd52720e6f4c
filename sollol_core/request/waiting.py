"""The waiting room of the gateway queue (admission.GatewayQueue): the requests that found no free slot.

One queue per class (high, interactive, batch). Within a class each client has its own line, and the lines
take turns by deficit round robin: each client earns QUANTUM cost units a round and is charged its request's
cost (an embed call: its inputs). Within a client's line, first come first served per model. The room keeps
the counts a newcomer and the dashboard read at once (requests waiting, per class and model), and says which
ticket goes next; what "can be placed" means is the queue's (placement, fair share), asked through a callback.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Union

from .call import BATCH, PRIORITY_CLASSES, Call, Priority
from .fair_share import FairShare, decrement
from .placement import Decision, Wait

if TYPE_CHECKING:
    from .lease import Lease

QUANTUM = 1.0  # deficit round robin: cost units a client earns per round


@dataclass(eq=False, slots=True)
class Ticket:
    """One waiting request; its waiter awaits `future` (the Lease, or the reason it will not get one)."""

    call: Call
    cls: Priority
    client: str
    cost: float
    exclude: frozenset[str]
    enqueued: float
    future: "asyncio.Future[Lease]"
    seq: int
    why: str = ""  # why it waits (the last placement's Wait reason), for the dashboard and /api/stats


@dataclass
class _ClassQueue:
    clients: "OrderedDict[str, deque[Ticket]]" = field(default_factory=OrderedDict)  # in round-robin order
    deficit: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(q) for q in self.clients.values())

    def tickets(self) -> Iterable[Ticket]:
        return (t for d in self.clients.values() for t in d)


# what the queue says of a waiting ticket now: placed (Decision), still waiting (Wait), or no host at all (None)
Placed = Union[Decision, Wait, None]


class WaitingRoom:
    def __init__(self, fair: FairShare) -> None:
        self.fair = fair
        self._classes = {c: _ClassQueue() for c in PRIORITY_CLASSES}
        self._seq = 0
        self._waiting = 0
        self._per_model: dict[tuple[Priority, Optional[str]], int] = {}  # requests waiting, per class and model

    # reading --------------------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Requests waiting, over every class (kept as a count: read on every release)."""
        return self._waiting

    def depth(self) -> dict[str, int]:
        return {c.value: len(q) for c, q in self._classes.items()}

    def oldest_wait_s(self) -> dict[str, float]:
        now = time.monotonic()
        out = {}
        for c, q in self._classes.items():
            oldest = min((t.enqueued for t in q.tickets()), default=None)
            out[c.value] = 0.0 if oldest is None else round(now - oldest, 3)
        return out

    def waiting_why(self) -> dict[str, str]:
        """Why the oldest request of each class that waits has not been placed (its last Wait reason)."""
        out: dict[str, str] = {}
        for c, q in self._classes.items():
            oldest = min(q.tickets(), key=lambda t: t.seq, default=None)
            if oldest is not None and oldest.why:
                out[c.value] = oldest.why
        return out

    def waiting_by_client(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for q in self._classes.values():
            for client, d in q.clients.items():
                out[client] = out.get(client, 0) + len(d)
        return out

    def models(self) -> set[Optional[str]]:
        """The models requests wait for."""
        return {m for (_, m) in self._per_model}

    def has_client(self, client: str) -> bool:
        return any(client in q.clients for q in self._classes.values())

    def ahead(self, cls: Priority, model: Optional[str]) -> int:
        """Requests waiting for `model` in this class or a higher one."""
        rank = PRIORITY_CLASSES.index(cls)
        return sum(self._per_model.get((c, model), 0) for c in PRIORITY_CLASSES[: rank + 1])

    def ahead_of(self, ticket: Ticket) -> int:
        """Requests for the same model to be placed before this one: its client's own older ones, and one
        per other client waiting in its class or a higher one (they take turns: deficit round robin)."""
        own = 0
        for t in self._classes[ticket.cls].clients.get(ticket.client, ()):
            if t is ticket:
                break
            if t.call.model == ticket.call.model:
                own += 1
        rank = PRIORITY_CLASSES.index(ticket.cls)
        others = sum(1 for c in PRIORITY_CLASSES[: rank + 1] for client in self._classes[c].clients
                     if client != ticket.client)
        return own + others

    def newest_below(self, cls: Priority) -> Optional[Ticket]:
        """The newest ticket of the lowest class under `cls` that has one (what a full queue sheds)."""
        rank = PRIORITY_CLASSES.index(cls)
        for lower in reversed(PRIORITY_CLASSES[rank + 1:]):
            newest = max(self._classes[lower].tickets(), key=lambda t: t.seq, default=None)
            if newest is not None:
                return newest
        return None

    # entering and leaving -------------------------------------------------------------------------
    def enter(self, call: Call, cls: Priority, client: str, exclude: frozenset[str], front: bool) -> Ticket:
        """A ticket at the back of its client's line (`front`: at its head: a request sent back by a busy
        host keeps its turn)."""
        self._seq += 1
        ticket = Ticket(call, cls, client, max(call.cost, 0.001), exclude, time.monotonic(),
                        asyncio.get_running_loop().create_future(), self._seq)
        q = self._classes[cls]
        d = q.clients.get(client)
        if d is None:
            d = q.clients[client] = deque()
            q.deficit.setdefault(client, 0.0)
        if front:
            d.appendleft(ticket)
        else:
            d.append(ticket)
        self._waiting += 1
        key = (cls, call.model)
        self._per_model[key] = self._per_model.get(key, 0) + 1
        self.fair.queued(client, call.model)
        return ticket

    def leave(self, ticket: Ticket) -> bool:
        """Take the ticket out of its line; False when it was not in one (served or withdrawn already)."""
        q = self._classes[ticket.cls]
        d = q.clients.get(ticket.client)
        if d is None or ticket not in d:
            return False
        d.remove(ticket)
        self._unlist(ticket, q, d)
        return True

    def served(self, ticket: Ticket) -> None:
        """The ticket got its slot: out of its line, and its client's turn is over (round robin: the next
        turn starts after this client)."""
        q = self._classes[ticket.cls]
        d = q.clients[ticket.client]
        d.remove(ticket)
        q.clients.move_to_end(ticket.client)
        self._unlist(ticket, q, d)

    def _unlist(self, ticket: Ticket, q: _ClassQueue, d: "deque[Ticket]") -> None:
        self._waiting -= 1
        decrement(self._per_model, (ticket.cls, ticket.call.model))
        self.fair.unqueued(ticket.client, ticket.call.model)
        if not d:
            del q.clients[ticket.client]
            q.deficit.pop(ticket.client, None)

    # who goes next --------------------------------------------------------------------------------
    def class_order(self, since_batch: int, batch_share: float) -> list[Priority]:
        """Strict priority, except that waiting batch requests get one in every 1/batch_share dispatches
        (`since_batch`: dispatches since the last batch one)."""
        order = list(PRIORITY_CLASSES)
        if batch_share > 0 and len(self._classes[BATCH]):
            every = max(1, math.ceil(1 / batch_share))
            if since_batch >= every - 1:
                order = [BATCH] + [c for c in order if c != BATCH]
        return order

    def next_to_serve(self, cls: Priority, place: Callable[[Ticket], Placed],
             fail: Callable[[Ticket, Optional[BaseException]], None]) -> tuple[Optional[Ticket], Optional[Decision]]:
        """Deficit round robin over the class's clients; each client's first placeable ticket competes.
        `place` says where a ticket would go now (it may raise: the model vanished); a ticket no host can
        take any more is handed to `fail`, and the class looked at again: a loop, not a recursion, however
        many waiters lost their host at once."""
        q = self._classes[cls]
        while True:
            if not q.clients:
                return None, None
            heads, failed = self._heads(q, place)
            for t, error in failed:
                fail(t, error)
            if not failed:
                break
        if not heads:
            return None, None
        need = {c: max(0.0, math.ceil((t.cost - q.deficit.get(c, 0.0)) / QUANTUM)) for c, t, _ in heads}
        rounds = min(need.values())
        if rounds:
            for c, _, _ in heads:
                q.deficit[c] = q.deficit.get(c, 0.0) + rounds * QUANTUM
        client, ticket, decision = next((c, t, dec) for c, t, dec in heads if need[c] == rounds)
        q.deficit[client] = q.deficit.get(client, 0.0) - ticket.cost
        return ticket, decision

    def _heads(self, q: _ClassQueue, place: Callable[[Ticket], Placed]
               ) -> tuple[list[tuple[str, Ticket, Decision]], list[tuple[Ticket, Optional[BaseException]]]]:
        """Each client's first ticket that can be placed now (per model, first come first served), and
        the waiters no host can take any more (the caller answers them: the queue changed, so it looks
        again)."""
        heads: list[tuple[str, Ticket, Decision]] = []
        over: list[tuple[str, Ticket, Decision]] = []  # heads of clients that hold their fair share already
        failed: list[tuple[Ticket, Optional[BaseException]]] = []
        for client, d in q.clients.items():
            seen_models: set[Optional[str]] = set()
            for t in d:
                if t.call.model in seen_models:
                    continue
                seen_models.add(t.call.model)
                try:
                    decision = place(t)
                except Exception as e:  # noqa: BLE001 - the model vanished: the waiter hears it
                    failed.append((t, e))
                    continue
                if decision is None:
                    failed.append((t, None))
                    continue
                if isinstance(decision, Decision):
                    if self.fair.over_share(t.client, t.call):
                        t.why = "its client holds its fair share of the model's slots while others wait"
                        over.append((client, t, decision))
                    else:
                        heads.append((client, t, decision))
                    break
                t.why = decision.reason
        # work-conserving: a slot nobody under its share can take goes to those over it
        return heads or over, failed
