"""Fair shares between the clients of one model (queue.fair_share): the ledger of who asks for, waits for
and holds which model's slots, and the two rules read from it.

    kept for others   a client that asks for more than its share of the model's capacity, while others use
                      the model too, leaves a slot free for each of those that ask for less (on the fastest
                      hosts), so that a quiet client's next request finds one
    over its share    while other clients wait for the model, a client is granted no more than its share of
                      the model's slots; alone it may take them all (work-conserving)

The gateway queue (admission.GatewayQueue) writes the ledger as requests arrive, queue, are granted and end.
"""

from __future__ import annotations

import time
from typing import Mapping, Optional, TypeVar

from ..cluster.slots import SlotTable
from ..config import SollolConfig
from ..errors import NoHostForModel
from .call import RANK_OF, Call
from .demand import Demand
from .placement import Keep, Placement

K = TypeVar("K")


class FairShare:
    def __init__(self, config: SollolConfig, placement: Placement, slots: SlotTable) -> None:
        self.config = config
        self.placement = placement
        self.slots = slots
        self.in_flight_by: dict[tuple[str, Optional[str]], int] = {}  # (client, model) -> requests in flight
        self.waiting_by: dict[tuple[str, Optional[str]], int] = {}  # (client, model) -> requests waiting
        self.seen: dict[tuple[str, Optional[str]], Demand] = {}  # (client, model) -> its recent requests
        self.held_at: dict[tuple[str, str, Optional[str]], int] = {}  # (client, host, model) -> in flight

    # the ledger ------------------------------------------------------------------------------------
    def asked(self, client: str, model: Optional[str], rank: int, now: float) -> None:
        """A request of the client for the model arrived (`rank`: its class, 0 goes first)."""
        demand = self.seen.get((client, model))
        if demand is None:
            demand = self.seen[(client, model)] = Demand(now)
        demand.add(now, self.config.queue.fair_window_s)
        demand.rank = rank

    def queued(self, client: str, model: Optional[str]) -> None:
        key = (client, model)
        self.waiting_by[key] = self.waiting_by.get(key, 0) + 1

    def unqueued(self, client: str, model: Optional[str]) -> None:
        decrement(self.waiting_by, (client, model))

    def granted(self, client: str, host: str, model: Optional[str]) -> None:
        key = (client, model)
        self.in_flight_by[key] = self.in_flight_by.get(key, 0) + 1
        at = (client, host, model)
        self.held_at[at] = self.held_at.get(at, 0) + 1

    def ended(self, client: str, host: str, model: Optional[str]) -> None:
        decrement(self.in_flight_by, (client, model))
        decrement(self.held_at, (client, host, model))

    # the rules -------------------------------------------------------------------------------------
    def others_using(self, client: str, model: Optional[str]) -> set[str]:
        """The other clients using the model: waiting for it, running on it, or sent it a request within
        queue.fair_window_s (stale entries are dropped on the way)."""
        if len(self.seen) <= 1:
            # the asking client's own entry at most (it was just seen, so it is not stale): everyone waiting
            # or in flight was seen too, so nobody else uses anything
            return set()
        horizon = time.monotonic() - self.config.queue.fair_window_s
        others = {c for (c, m), n in self.waiting_by.items() if n and m == model and c != client}
        others |= {c for (c, m), n in self.in_flight_by.items() if n and m == model and c != client}
        for (c, m), demand in list(self.seen.items()):
            if demand.last < horizon:
                if not self.waiting_by.get((c, m)) and not self.in_flight_by.get((c, m)):
                    del self.seen[(c, m)]
            elif m == model and c != client:
                others.add(c)
        return others

    def kept_for_others(self, client: str, call: Call) -> Optional[Keep]:
        """While other clients use the model, a client that asks for more than its share of the model's
        capacity leaves a slot free for each of the others that ask for less, beyond what they hold, on the
        fastest hosts (queue.fair_share): a quiet client's next request then finds a good slot instead of
        waiting behind a loud one. Capacity and demand are in requests per second (a slot serves 1 / its
        host's service time; a client asks for its requests within queue.fair_window_s, per second).
        None: nothing kept; alone, or with nothing in flight, a client may take any free slot."""
        if not self.config.queue.fair_share or not self.in_flight_by.get((client, call.model)):
            return None
        # slots are kept only for clients of the same class or a higher one: a chat leaves nothing free for a
        # batch (the batch leaves slots for chats: queue.interactive_reserve)
        others = self.others_using(client, call.model)
        if not others:
            return None
        rank = RANK_OF.get(call.priority, 1)
        others = {c for c in others if (d := self.seen.get((c, call.model))) is not None and d.rank <= rank}
        if not others:
            return None
        rates = slot_rates(self.placement, call)
        if not rates:
            return None
        window = self.config.queue.fair_window_s
        now = time.monotonic()
        capacity = sum(slots * rate for slots, rate in rates.values())
        share = capacity / (len(others) + 1)
        per_slot = capacity / max(1, sum(slots for slots, _ in rates.values()))

        def asks(c: str) -> float:
            """Its rate over the fair window, or what its requests waiting now would take, whichever is more:
            a rate read over a window lags a client that began flooding a moment ago, its backlog does not."""
            d = self.seen.get((c, call.model))
            rate = d.rate(now, window) if d is not None else 0.0
            waiting = self.waiting_by.get((c, call.model), 0)
            return max(rate, waiting * per_slot) if waiting else rate

        if asks(client) <= share:
            return None
        wanted = sum(self.in_flight_by.get((c, call.model), 0) + 1 for c in others if asks(c) <= share)
        keep: dict[str, int] = {}
        for host, kept in kept_free(rates, wanted).items():
            held = self.held_at.get((client, host, call.model), 0)
            by_others = self.slots.in_use(host, call.model) - held
            if kept > by_others:  # of the slots kept there, these are not in the others' hands yet
                keep[host] = kept - by_others
        if not keep:
            return None
        return Keep(keep, frozenset(h for h in rates if self.held_at.get((client, h, call.model))))

    def over_share(self, client: str, call: Call) -> bool:
        """While other clients wait for its model, a client is granted no more than its fair share of the
        model's slots (queue.fair_share); alone it may take them all (work-conserving)."""
        if not self.config.queue.fair_share:
            return False
        model = call.model
        mine = self.in_flight_by.get((client, model), 0)
        if not mine:
            return False
        others = {c for (c, m), n in self.waiting_by.items() if n and m == model and c != client}
        if not others:
            return False
        total = total_slots(self.placement, call)
        if total is None:
            return False  # some host's slots are unknown: no share can be told
        active = {c for (c, m), n in self.in_flight_by.items() if n and m == model} | others | {client}
        return mine >= max(1, total // len(active))


# the model's capacity, as the rules read it ---------------------------------------------------------------
def slot_rates(placement: Placement, call: Call) -> Optional[dict[str, tuple[int, float]]]:
    """Per host that could take the call: (its slots for the model, requests per second one slot serves:
    1 / measured service time); None when some host's slots are unknown (unlimited)."""
    try:
        hosts = placement.candidates(call)
    except NoHostForModel:
        return None
    out: dict[str, tuple[int, float]] = {}
    for h in hosts:
        slots = placement.slots.slots(h.address, call.model, call.embedding)
        if slots is None:
            return None
        out[h.address] = (slots, 1.0 / placement.service_s(h))
    return out


def kept_free(rates: Mapping[str, tuple[int, float]], n: int) -> dict[str, int]:
    """Where `n` slots are kept for other clients: on the fastest hosts first, as many as each has."""
    out: dict[str, int] = {}
    for host, (slots, _) in sorted(rates.items(), key=lambda x: (-x[1][1], x[0])):
        if n <= 0:
            break
        if slots:
            out[host] = min(slots, n)
            n -= out[host]
    return out


def total_slots(placement: Placement, call: Call) -> Optional[int]:
    """The slots for the call's model over every host that could take it; None when some host's are unknown
    (unlimited)."""
    try:
        hosts = placement.candidates(call)
    except NoHostForModel:
        return None
    total = 0
    for h in hosts:
        slots = placement.slots.slots(h.address, call.model, call.embedding)
        if slots is None:
            return None
        total += slots
    return total


def decrement(counts: dict[K, int], key: K) -> None:
    """One fewer of `key`; a count that reaches 0 leaves the dict (per-client books stay small)."""
    n = counts.get(key, 0) - 1
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)
