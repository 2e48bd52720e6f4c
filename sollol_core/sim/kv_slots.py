"""A model's slots and what each one remembers (its prompt cache), and which idle slot a request takes.

Three ways to choose, after the Ollama versions the gateway meets (DESIGN.md, "What an Ollama host
remembers"); ties go to the lowest slot index:

  lcp        Ollama >= 0.30 (llama-server): the idle slot whose cache shares the longest common prefix
             with the prompt, if that prefix covers more than 10% of the prompt; else the least recently
             used idle slot.
  multiuser  Ollama < 0.30 with OLLAMA_MULTIUSER_CACHE=1: the idle slot whose whole cache is a prefix of
             the prompt (the longest); else the least recently used idle slot, into which the common prefix
             of the best-matching slot (busy or not) is copied first, as Ollama's runner forks a cache.
  legacy     Ollama < 0.30 default: the idle slot with the longest common prefix, however short.

The reused part of a prompt is its common prefix with the chosen slot's cache. Requests that find no idle
slot wait in arrival order; ``max_queue`` bounds how many may wait.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional

from .wire import BUSY_QUEUE, SimError

LCP_MIN_SHARE = 0.10


def common_prefix(a: str, b: str) -> int:
    """Length of the common prefix. startswith compares at C speed without copying; a mismatch is found by
    halving the range, so at most about len(b) characters are copied in all."""
    if len(a) > len(b):
        a, b = b, a
    if b.startswith(a):
        return len(a)
    lo, hi = 0, len(a)  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if b.startswith(a[lo:mid], lo):
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class Slot:
    index: int
    cache: str = ""  # the rendered text whose KV state the slot holds
    busy: bool = False
    last_used: float = 0.0  # time.monotonic() when last taken or released; 0 = never


@dataclass(frozen=True)
class SlotState:
    """One slot as tests see it (``SimNode.slot_states``)."""

    index: int
    cached_chars: int
    busy: bool
    last_used: float


@dataclass(frozen=True)
class Prefill:
    """What one generation request found in its slot (``SimNode.prefills``, newest last)."""

    path: str
    model: str
    slot: int
    prompt_chars: int  # the rendered prompt
    reused_chars: int  # of it, already in the slot's cache (not evaluated again)
    load_ns: int  # > 0 when the request waited for the model to load


class SlotPool:
    """The slots of one loaded model. Used only from the node's event loop."""

    def __init__(self, size: int, mode: str, max_queue: Optional[int]) -> None:
        self.slots = [Slot(i) for i in range(max(1, size))]
        self.mode = mode
        self.max_queue = max_queue
        self._waiters: deque[tuple[asyncio.Future, str]] = deque()
        self._drains: list[asyncio.Future] = []  # waiting for every slot to be idle (a reload)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def states(self) -> list[SlotState]:
        return [SlotState(s.index, len(s.cache), s.busy, s.last_used) for s in self.slots]

    def clear(self) -> None:
        """The model was (re)loaded or unloaded: every cache is gone."""
        for slot in self.slots:
            slot.cache = ""

    def _lru(self, idle: list[Slot]) -> Slot:
        return min(idle, key=lambda s: s.last_used)  # min keeps the first of equals: lowest index

    def _pick(self, prompt: str) -> tuple[Slot, int]:
        """(slot, reused characters) among the idle slots; at least one is idle."""
        memo: dict[str, int] = {}  # slots often hold the same text: compare each distinct cache once

        def shared(slot: Slot) -> int:
            cache = slot.cache
            if not cache:
                return 0
            n = memo.get(cache)
            if n is None:
                n = memo[cache] = common_prefix(prompt, cache)
            return n

        idle = [s for s in self.slots if not s.busy]
        best_n, best = -1, idle[0]
        for s in idle:  # the first of equals: lowest index; inlined shared(), this runs for every slot
            cache = s.cache
            if not cache:
                n = 0
            else:
                n = memo.get(cache, -1)
                if n < 0:
                    n = memo[cache] = common_prefix(prompt, cache)
            if n > best_n:
                best_n, best = n, s
        if self.mode == "legacy":
            return best, best_n
        if self.mode == "lcp":
            if best_n > LCP_MIN_SHARE * len(prompt):
                return best, best_n
            lru = self._lru(idle)
            return lru, shared(lru)
        # multiuser: the best match over all slots, busy ones included, as Ollama's findBestCacheSlot
        longest_n, longest = -1, self.slots[0]
        for s in self.slots:
            n = shared(s)
            if n > longest_n:
                longest_n, longest = n, s
        if longest_n == len(longest.cache) and not longest.busy:
            return longest, longest_n
        lru = self._lru(idle)
        if longest_n > 0 and longest is not lru:
            lru.cache = longest.cache[:longest_n]  # fork: copy the shared prefix into the evicted slot
        return lru, shared(lru) if longest_n <= 0 or longest is lru else longest_n

    def _take(self, prompt: str) -> tuple[Slot, int]:
        slot, reused = self._pick(prompt)
        slot.busy = True
        slot.last_used = time.monotonic()
        return slot, reused

    async def acquire(self, prompt: str) -> tuple[Slot, int]:
        """Take an idle slot for this prompt, waiting in line when none is idle; (slot, reused characters).
        503 (Ollama's text) when max_queue requests already wait."""
        if not self._waiters and any(not s.busy for s in self.slots):
            return self._take(prompt)
        if self.max_queue is not None and len(self._waiters) >= self.max_queue:
            raise SimError(503, BUSY_QUEUE)
        fut: asyncio.Future[tuple[Slot, int]] = asyncio.get_running_loop().create_future()
        entry = (fut, prompt)
        self._waiters.append(entry)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # handed a slot just as the waiter went away
                self.release(fut.result()[0])
            else:
                try:
                    self._waiters.remove(entry)
                except ValueError:
                    pass
                self._wake_drains()
            raise

    @property
    def idle(self) -> bool:
        return not self._waiters and not any(s.busy for s in self.slots)

    async def drained(self) -> None:
        """Until no slot is busy and nobody waits for one (Ollama lets a runner's requests finish before it
        reloads the model)."""
        while not self.idle:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drains.append(fut)
            try:
                await fut
            finally:
                if fut in self._drains:
                    self._drains.remove(fut)

    def release(self, slot: Slot) -> None:
        slot.busy = False
        slot.last_used = time.monotonic()
        while self._waiters:
            fut, prompt = self._waiters.popleft()
            if not fut.done():
                fut.set_result(self._take(prompt))
                return
        self._wake_drains()

    def _wake_drains(self) -> None:
        if self._drains and self.idle:
            drains, self._drains = self._drains, []
            for fut in drains:
                if not fut.done():
                    fut.set_result(None)
