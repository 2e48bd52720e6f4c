"""Slots: how many requests each (host, model) may have in flight, and how many it has.

An Ollama host runs OLLAMA_NUM_PARALLEL requests per loaded model at once (embedding models one) and queues
the rest inside, out of anyone's reach. SOLLOL keeps no more in flight on a (host, model) than its slots plus
`host_queue_depth`; the rest wait in the gateway queue (admission) where they can still go anywhere.

A host without a num_parallel of its own has its slots learned per model from its answers' timings
(slot_learning.SlotLearner, when the table has one); until then default_num_parallel holds, and a host with
neither is not limited: it behaves as before the queue existed. Two temporary corrections come from the
host's own answers:

* busy ("server busy" 503, "no slots available" 500): its limit drops to what it holds now, for a while, so
  the next request waits in the gateway instead of bouncing off the host again (it is not blamed);
* cannot load the model (500 "unable to load", out of memory): that (host, model) is unfit for a while; the
  host stays healthy for its other models.

Everything here runs in the core loop; the dashboard reads copies through `view`.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..observability.snapshot import SlotLearningView
from .hosts import model_key
from .slot_learning import SlotLearner, SlotTicket

BUSY_BACKOFF_S = 10.0  # how long a host that answered "busy" keeps its lowered limit
BUSY_CLOSED_S = 0.5  # a host busy with none of SOLLOL's requests takes nothing for this long, then one at a time
UNFIT_FOR_S = 120.0  # how long a (host, model) that could not load the model is left out


@dataclass
class _Pair:
    """One (host, model): requests admitted now, and when each started (oldest first)."""

    in_use: int = 0
    started: deque[float] = field(default_factory=deque)  # monotonic start times of the requests in flight
    tickets: list[SlotTicket] = field(default_factory=list)  # the requests in flight (oldest first)
    busy_limit: Optional[int] = None  # lowered limit after a busy answer
    busy_until: float = 0.0
    closed_until: float = 0.0  # busy with nothing of ours in flight: no request at all until then
    unfit_until: float = 0.0
    unfit_reason: str = ""
    embedded: bool = False  # it served embedding requests
    generated: bool = False  # it served chat or generate requests: then it is not an embedding model


class SlotTable:
    """Slot accounting per (host, model).

    `limit_of(host) -> Optional[int]` gives a host's configured slots per model (None: unlimited); it is read
    on every decision, so a change (the dashboard's `n`, update_config) applies at once. `learner`: the
    slots learned for hosts without a num_parallel of their own, which then replace `limit_of`'s value.
    """

    def __init__(self, limit_of: Callable[[str], Optional[int]], queue_depth: Callable[[], int],
                 clock: Callable[[], float] = time.monotonic, *, learner: Optional[SlotLearner] = None) -> None:
        self._limit_of = limit_of
        self._queue_depth = queue_depth
        self._clock = clock
        self.learner = learner
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self.ever_unfit = False  # some (host, model) was marked unfit since start: candidates check them
        self._listeners: list[Callable[[], None]] = []

    # limits -------------------------------------------------------------------------------------------
    def slots(self, host: str, model: Optional[str], embedding: bool = False) -> Optional[int]:
        """The host's slots for this model: configured num_parallel, else learned, else default_num_parallel
        (embedding models 1); None when unlimited."""
        return self._slots((host, model_key(model) if model else ""), embedding)

    def _slots(self, key: tuple[str, str], embedding: bool) -> Optional[int]:
        configured = self._limit_of(key[0])
        if self.learner is not None:
            learned = self.learner.learned(key[0], key[1])
            if learned is not None:
                configured = learned
        if configured is None:
            return None
        pair = self._pairs.get(key)
        if pair is not None and pair.generated:
            return configured  # a generation model keeps its slots for the embeddings it is asked for too
        return 1 if embedding or (pair is not None and pair.embedded) else configured

    def limit(self, host: str, model: Optional[str], embedding: bool = False) -> Optional[int]:
        """Requests SOLLOL lets be in flight on (host, model): slots + host_queue_depth, lowered while busy."""
        key = (host, model_key(model) if model else "")
        slots = self._slots(key, embedding)
        limit = None if slots is None else slots + self._queue_depth()
        pair = self._pairs.get(key)
        if pair is not None and pair.busy_limit is not None:
            now = self._clock()
            if now < pair.closed_until:
                return 0
            if now < pair.busy_until:
                limit = pair.busy_limit if limit is None else min(limit, pair.busy_limit)
            else:
                pair.busy_limit = None
        return limit

    def free(self, host: str, model: Optional[str], embedding: bool = False) -> Optional[int]:
        """Slots free now (None: unlimited)."""
        limit = self.limit(host, model, embedding)
        if limit is None:
            return None
        return max(0, limit - self.in_use(host, model))

    def has_room(self, host: str, model: Optional[str], embedding: bool = False, adjust: int = 0) -> bool:
        """A slot is free; `adjust` slots more (a batch request's pipelining) or fewer (held in reserve)."""
        limit = self.limit(host, model, embedding)
        if limit is None:
            return True
        pair = self._pairs.get((host, model_key(model) if model else ""))
        return limit - (pair.in_use if pair is not None else 0) + adjust > 0

    def in_use(self, host: str, model: Optional[str]) -> int:
        pair = self._pairs.get(self._key(host, model))
        return pair.in_use if pair is not None else 0

    def may_probe(self, host: str, model: Optional[str], embedding: bool = False, *,
                  learned_only: bool = False) -> bool:
        """The (host, model) is full at slots it learns, and one request more may go now to see whether the
        host runs it at once (slot_learning: a probe). Never for embeddings, nor while the host says busy.
        learned_only: only when the slots were learned (not the fallback while nothing is)."""
        if self.learner is None or embedding or not model:
            return False
        key = self._key(host, model)
        pair = self._pairs.get(key)
        if pair is None or pair.embedded or pair.busy_limit is not None:
            return False
        if learned_only and self.learner.learned(host, key[1]) is None:
            return False
        limit = self.limit(host, model)
        return limit is not None and pair.in_use == limit and self.learner.may_probe(host, key[1])

    def host_slots(self, host: str) -> Optional[int]:
        """The host's slots per model as a whole: its num_parallel, else the most learned for any of its
        models, else default_num_parallel (None: unlimited). What the cache shadow models and the views show."""
        if self.learner is not None:
            learned = self.learner.learned_any(host)
            if learned is not None:
                return learned
        return self._limit_of(host)

    def learned_views(self, host: str) -> tuple[SlotLearningView, ...]:
        return self.learner.views(host) if self.learner is not None else ()

    # accounting ---------------------------------------------------------------------------------------
    def acquire(self, host: str, model: Optional[str], embedding: bool = False) -> SlotTicket:
        """One more request in flight on (host, model); its ticket goes back with `release` and `answered`."""
        key = self._key(host, model)
        pair = self._pair(host, model)
        if embedding:
            pair.embedded = True
        else:
            pair.generated = True
        now = self._clock()
        ticket = SlotTicket(host, key[1], now, list(pair.tickets))
        if self.learner is not None and not embedding:
            limit = self.limit(host, model, embedding)
            ticket.probe = limit is not None and pair.in_use >= limit
            self.learner.granted(ticket)
        pair.in_use += 1
        pair.started.append(now)
        pair.tickets.append(ticket)
        return ticket

    def release(self, host: str, model: Optional[str], ticket: Optional[SlotTicket] = None) -> None:
        pair = self._pairs.get(self._key(host, model))
        if pair is not None and pair.in_use > 0:
            pair.in_use -= 1
            if pair.started:
                pair.started.popleft()
            if ticket is None and pair.tickets:
                ticket = pair.tickets[0]
            if ticket is not None:
                try:
                    pair.tickets.remove(ticket)
                except ValueError:
                    pass
        if ticket is not None and ticket.ended is None:
            ticket.ended = self._clock()
            ticket.others = []  # what it needed them for is read (its answer comes before its release)
            if self.learner is not None:
                self.learner.ended(ticket)
        for listener in list(self._listeners):
            listener()

    def answered(self, ticket: SlotTicket, wait_s: Optional[float], load_s: Optional[float],
                 work_s: Optional[float]) -> None:
        """A native answer's timings for the request of `ticket`: the time it waited inside the host for a
        slot (total - load - prompt eval - eval), its load and its work (prompt eval + eval)."""
        if self.learner is not None and wait_s is not None and ticket.ended is None:
            self.learner.observe(ticket, wait_s, load_s or 0.0, work_s or 0.0)

    def on_release(self, listener: Callable[[], None]) -> None:
        """listener() after every release (the gateway queue places what waits)."""
        self._listeners.append(listener)

    def next_free_in(self, host: str, model: Optional[str], service_s: float) -> float:
        """Seconds until the (host, model)'s oldest request is expected to end (0 when it is overdue)."""
        pair = self._pairs.get(self._key(host, model))
        if pair is None or not pair.started:
            return 0.0
        oldest: float = pair.started[0]
        return max(0.0, oldest + service_s - self._clock())

    # corrections from the host's answers ----------------------------------------------------------------
    def mark_busy(self, host: str, model: Optional[str], seconds: float = BUSY_BACKOFF_S) -> int:
        """The host said it is busy to one of the requests in flight there: hold it, for a while, to what the
        others in flight hold (so the refused request waits in the gateway until one of them ends); with
        no other request of ours there, it takes nothing for BUSY_CLOSED_S, then one at a time."""
        pair = self._pair(host, model)
        now = self._clock()
        others = max(0, pair.in_use - 1)
        pair.busy_limit = max(1, others)
        pair.busy_until = now + seconds
        pair.closed_until = now + BUSY_CLOSED_S if others == 0 else 0.0
        return others

    def mark_unfit(self, host: str, model: Optional[str], reason: str, seconds: float = UNFIT_FOR_S) -> None:
        pair = self._pair(host, model)
        pair.unfit_until = self._clock() + seconds
        self.ever_unfit = True
        pair.unfit_reason = reason

    def is_unfit(self, host: str, model: Optional[str]) -> bool:
        pair = self._pairs.get(self._key(host, model))
        return pair is not None and self._clock() < pair.unfit_until

    def forget_host(self, host: str) -> None:
        """A removed host: its corrections go (requests still in flight release into nothing), and what
        its answers taught about its slots."""
        for key in [k for k in self._pairs if k[0] == host]:
            pair = self._pairs[key]
            pair.busy_limit, pair.unfit_until = None, 0.0
        self.forget_learned(host)

    def forget_learned(self, host: str, model: Optional[str] = None) -> None:
        """The host restarted (or the model left it): its slots are learned again."""
        if self.learner is not None:
            self.learner.forget(host, model_key(model) if model else None)

    # reading ------------------------------------------------------------------------------------------
    def view(self, host: str) -> tuple[int, tuple[tuple[str, int, Optional[int]], ...], tuple[str, ...]]:
        """(requests in flight over all models, (model, in use, limit) per model, unfit models)."""
        now = self._clock()
        total, by_model, unfit = 0, [], []
        for (h, model), pair in sorted(self._pairs.items()):
            if h != host:
                continue
            total += pair.in_use
            if pair.in_use or model:
                by_model.append((model, pair.in_use, self.limit(host, model or None)))
            if now < pair.unfit_until:
                unfit.append(model)
        return total, tuple(m for m in by_model if m[1] or m[2] is not None), tuple(unfit)

    # helpers ------------------------------------------------------------------------------------------
    @staticmethod
    def _key(host: str, model: Optional[str]) -> tuple[str, str]:
        return host, model_key(model) if model else ""

    def _pair(self, host: str, model: Optional[str]) -> _Pair:
        key = self._key(host, model)
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = _Pair()
        return pair
