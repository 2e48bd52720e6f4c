"""What each host's slots remember (a shadow of their prompt caches), and how fast each host prefills.

Ollama gives every loaded model OLLAMA_NUM_PARALLEL slots; a slot keeps the KV cache of the prompt it served
last, and a new request takes the idle slot whose cache shares the longest common prefix with it when that
covers more than 10% of the prompt, else the least recently used one (Ollama >= 0.30, llama-server), which
may also restore a displaced prompt from host RAM. The shadow replays that choice on the canonical prompts
(sollol_core.prompt_cache.canonical) SOLLOL sent, so placement can ask, for every host, how much of a prompt it would
reuse and what it would evict, without asking the host.

The shadow is a guess; the host's answers correct it: feedback.read_answer compares what an answer shows
with what was predicted, and learns the host's prefill rate on the way; a contradiction corrects the shadow.

All methods are O(slots + a few displaced candidates) and never block; one lock makes them safe to call
from another thread too (the dashboard's snapshot reads host_view).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from itertools import islice
from typing import Any, Callable, Optional

from ..config import CacheSettings
from ..observability.snapshot import CacheView
from .feedback import Correction, CorrectionKind, Feedback, read_answer
from .key import PromptKey, common_blocks
from .prefill_rates import PrefillRates
from .shadow_state import CacheMatch, HostShadow, Placed, SlotEntry, slot_count

DISPLACED_SCAN = 32  # displaced prompts compared per match (the most recent sharing the first block)
RETURN_GAPS = 64  # the latest gaps between a conversation's turns kept (the time its slot sat idle)
RETURN_GAPS_TRUSTED = 8  # gaps seen before they say anything about when a conversation has ended


_EMPTY: list[SlotEntry] = []


class CacheShadow:
    """The shadow of every host's slots. See the module docstring."""

    def __init__(self, settings: CacheSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings  # read at each call, so live changes apply
        self.clock = clock
        self._hosts: dict[str, HostShadow] = {}
        self.rates = PrefillRates(settings)  # how fast each host prefills, learned from its answers
        self._gaps: deque[float] = deque(maxlen=RETURN_GAPS)
        self._gap_mean: Optional[float] = None  # None: not computed since the last gap
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------- choosing a slot

    def match(self, host: str, key: PromptKey, slots: Optional[int]) -> CacheMatch:
        """Which idle slot the host would choose for this prompt and how much it would reuse (a pure read)."""
        with self._lock:
            return self._choose(self._hosts.get(host), host, key, slot_count(slots))[0]

    def _choose(self, h: Optional[HostShadow], host: str, key: PromptKey, n: int
                ) -> tuple[CacheMatch, Optional[SlotEntry]]:
        """(match, displaced entry restored or None). Emulates llama-server's slot choice."""
        now = self.clock()
        st = self.settings
        entries = h.models.get(key.model, _EMPTY) if h is not None else _EMPTY
        chars = key.chars
        active = 0
        free = 0
        best_i, best_c = -1, 0  # idle slot with the longest common prefix (in blocks)
        lru_i, lru_used = -1, math.inf
        lcps: dict[int, int] = {}
        for i in range(min(n, len(entries))):
            e = entries[i]
            if e.busy:
                active += 1
                continue
            free += 1
            if e.blocks is not None:
                if now - e.used < st.active_s:
                    active += 1
                c = common_blocks(key.blocks, e.blocks) if e.bc == key.block_chars else 0
                lcps[i] = c
                if c > best_c:
                    best_i, best_c = i, c
            if e.used < lru_used:
                lru_i, lru_used = i, e.used
        if n > len(entries):  # slots never used: empty, least recently used of all
            extra = n - len(entries)
            free += extra
            if lru_used > -math.inf:
                lru_i, lru_used = len(entries), -math.inf
        if free == 0:  # the request would wait for the slot that frees first, evicting what it ran by then
            first = min((e for e in entries[:n] if e.running is not None), key=lambda e: e.used, default=None)
            run = first.running if first is not None else None
            evicts = run is not None and run.anchor != key.anchor and (key.session is None or run.session != key.session)
            return CacheMatch(host, key.model, chars, 0, 0.0, -1, False, evicts, 0.0 if evicts else math.inf, 0,
                              active, victim_chars=run.chars if evicts and run is not None else 0), None
        if best_i >= 0 and key.chars_of(best_c) > st.min_cover * chars:
            chosen = best_i
        else:
            chosen = lru_i
        victim = entries[chosen] if chosen < len(entries) else None
        c = lcps.get(chosen, 0)
        cached = key.chars_of(c)
        restored = None
        if st.displaced_per_host > 0 and h is not None and h.displaced and key.blocks:
            bucket = h.dindex.get((key.model, key.blocks[0]))
            if bucket:
                for d in islice(reversed(bucket), DISPLACED_SCAN):
                    if d.bc == key.block_chars:
                        dc = key.chars_of(common_blocks(key.blocks, d.blocks))
                        if dc > cached:
                            cached, restored = dc, d
        same = evicts = False
        idle_s = math.inf
        if victim is not None and victim.blocks is not None:  # the chosen slot holds a prompt
            same = victim.anchor == key.anchor or (key.session is not None and victim.session == key.session)
            extends = c >= victim.chars // victim.bc
            evicts = now - victim.used < st.active_s and not extends and not same
            idle_s = now - victim.used
        return CacheMatch(host, key.model, chars, cached, cached / chars if chars else 0.0, chosen,
                          restored is not None, evicts, idle_s, free, active, same,
                          victim.chars if evicts and victim is not None else 0), restored

    def active_conversations(self, host: str, model: str) -> int:
        """Slots of `model` on `host` busy or holding a conversation used within active_s."""
        with self._lock:
            h = self._hosts.get(host)
            if h is None:
                return 0
            now = self.clock()
            act = self.settings.active_s
            return sum(1 for e in h.models.get(model, _EMPTY)
                       if e.busy or (e.blocks is not None and now - e.used < act))

    # ----------------------------------------------------------------------------------- the request's life

    def place(self, host: str, key: PromptKey, slots: Optional[int], match: Optional[CacheMatch] = None) -> Placed:
        """Commit: the slot the host would choose becomes busy and will hold this prompt.

        `match`: what match() said a moment ago (placement reads every candidate first); used as it is when
        it still holds (its slot idle, nothing displaced involved), so the choice is not made twice."""
        with self._lock:
            n = slot_count(slots)
            h = self._hosts.get(host)
            if h is None:
                h = self._hosts[host] = HostShadow()
            if match is not None and self._still_holds(h, key, n, match):
                m, restored = match, None
            else:
                m, restored = self._choose(h, host, key, n)
            now = self.clock()
            h.placements += 1
            hit = m.cached_chars > 0
            if hit:
                h.hits += 1
                h.predicted_hits += 1
            placed = Placed(host, key.model, m.slot, key, m, now, hit=hit)
            if m.slot < 0:
                return placed
            entries = h.models.get(key.model)
            if entries is None:
                entries = h.models[key.model] = []
            self._resize(h, entries, n, key.model)
            e = entries[m.slot]
            if e.blocks is not None and m.same_conversation and not e.busy and e.used > -math.inf:
                self._gaps.append(max(0.0, now - e.used))  # its conversation came back after this long
                self._gap_mean = None
            if e.blocks is not None:
                old_blocks, old_chars = e.blocks, e.chars
                placed._held = (old_blocks, old_chars, e.bc, e.anchor, e.session, e.used)
                keep = self.settings.displaced_per_host > 0 and (
                    restored is not None or key.common_blocks(old_blocks) < old_chars // max(e.bc, 1))
                self._clear(h, e)
                if keep:  # llama-server saves the state it displaces to its host-RAM prompt cache
                    d = SlotEntry(e.model)
                    self._fill(h, d, old_blocks, old_chars, e.bc, e.anchor, e.session)
                    d.used = e.used
                    self._add_displaced(h, d)
            if restored is not None:
                self._remove_displaced(h, restored)
            e.busy = True
            e.running = key
            e.used = now
            placed._entry = e
            self._trim(h)
            return placed

    @staticmethod
    def _still_holds(h: "HostShadow", key: PromptKey, n: int, m: CacheMatch) -> bool:
        if m.displaced or m.model != key.model or m.chars != key.chars or m.slot < 0 or m.slot >= n:
            return False
        entries = h.models.get(key.model)
        if entries is None:
            return m.cached_chars == 0 and m.slot == 0
        if len(entries) != n or m.slot >= len(entries):
            return False
        return not entries[m.slot].busy

    def return_gap_s(self) -> Optional[float]:
        """How long a conversation's slot sits idle between two of its turns, on average over the latest
        gaps seen here (None until RETURN_GAPS_TRUSTED were)."""
        with self._lock:
            if len(self._gaps) < RETURN_GAPS_TRUSTED:
                return None
            if self._gap_mean is None:
                self._gap_mean = sum(self._gaps) / len(self._gaps)
            return self._gap_mean

    def complete(self, placed: Placed, *, answer: Optional[PromptKey] = None) -> None:
        """The request ended well: the slot is idle and holds the prompt (or prompt + answer)."""
        with self._lock:
            if placed.done:
                return
            placed.done = True
            h = self._hosts.get(placed.host)
            key = placed.key
            if answer is not None and answer.model == key.model and answer.block_chars == key.block_chars:
                key = answer
            self._settle(h, placed, key)
            if h is not None:
                placed.credited_s = self._prefill_s(placed.host, placed.model, self._reused(placed))
                h.saved_s += placed.credited_s

    def release(self, placed: Placed, *, failed: bool) -> None:
        """The request ended without an answer: the slot is idle; failed=True forgets what it held."""
        with self._lock:
            if placed.done:
                return
            placed.done = True
            self._settle(self._hosts.get(placed.host), placed, None if failed else placed.key)

    def untouched(self, placed: Placed) -> None:
        """The host never ran the prompt (it was busy, refused it, or never got it): the slot holds what it
        held before this placement took it."""
        with self._lock:
            if placed.done:
                return
            placed.done = True
            h = self._hosts.get(placed.host)
            e = placed._entry
            if e is None:
                return
            e.busy = False
            e.running = None
            if h is None or not e.alive:
                return
            self._clear(h, e)
            held = placed._held
            if held is not None:
                blocks, chars, bc, anchor, session, used = held
                self._fill(h, e, blocks, chars, bc, anchor, session)
                e.used = used
                self._trim(h, keep=e)

    def _settle(self, h: Optional[HostShadow], placed: Placed, key: Optional[PromptKey]) -> None:
        e = placed._entry
        if e is None:
            return
        e.busy = False
        e.running = None
        e.used = self.clock()
        if h is None or not e.alive:
            return
        self._clear(h, e)
        if key is not None:
            self._fill(h, e, key.blocks, key.chars, key.block_chars, key.anchor, key.session)
            self._trim(h, keep=e)

    # ----------------------------------------------------------------------------------- feedback

    def observe(self, placed: Placed, feedback: Feedback) -> Correction:
        """Compare the predicted reuse with what the host reported; learn the prefill rate; correct the
        shadow where the answer contradicts it. Call once per placement, before or after complete()."""
        with self._lock:
            if placed.observed:
                return Correction(CorrectionKind.NONE, placed.fraction, None)
            placed.observed = True
            return self._observe(placed, feedback)

    def _observe(self, placed: Placed, fb: Feedback) -> Correction:
        p = placed.fraction
        h = self._hosts.get(placed.host)
        reading = read_answer(self.rates.of(placed.host, placed.model), fb, p, placed.key.chars)
        if reading.learned:
            self.rates.learned()
        kind = reading.kind
        forgot = 0
        if kind.forgets_model and h is not None:
            forgot = self._forget_model(h, placed.model, keep=placed._entry)
        if kind is CorrectionKind.RELOADED:
            corrected = forgot > 0 or placed.hit
        else:
            corrected = kind in (CorrectionKind.LOST, CorrectionKind.UNEXPECTED)
        return self._conclude(placed, h, kind, p, reading.observed, forgot, corrected)

    def _conclude(self, placed: Placed, h: Optional[HostShadow], kind: CorrectionKind, p: float,
                  observed: Optional[float], forgot: int, corrected: bool) -> Correction:
        if h is not None:
            if kind.forgets_model and placed.hit:
                placed.hit = False
                h.hits -= 1
            elif kind is CorrectionKind.UNEXPECTED and not placed.hit:
                placed.hit = True
                h.hits += 1
            elif kind is CorrectionKind.CONFIRMED:
                h.confirmed_hits += 1
            if corrected:
                h.corrections += 1
        if kind.forgets_model:
            placed.observed_chars = 0
        elif observed is not None and kind in (CorrectionKind.CONFIRMED, CorrectionKind.UNEXPECTED):
            placed.observed_chars = int(round(observed * placed.key.chars))
        if placed.done and h is not None:  # completed before this answer was read: re-credit
            credit = self._prefill_s(placed.host, placed.model, self._reused(placed))
            h.saved_s += credit - placed.credited_s
            placed.credited_s = credit
        return Correction(kind, p, observed, forgot, corrected)

    @staticmethod
    def _reused(placed: Placed) -> int:
        return placed.observed_chars if placed.observed_chars is not None else placed.match.cached_chars

    # ----------------------------------------------------------------------------------- forgetting

    def drop_host(self, host: str) -> None:
        """The host restarted, left, or came back after a restart: it remembers nothing. (Counters and the
        measured prefill rate stay: they describe the machine, not its cache.)"""
        with self._lock:
            h = self._hosts.get(host)
            if h is not None:
                for model in list(h.models):
                    self._forget_model(h, model, keep=None)

    def drop_model(self, host: str, model: str) -> None:
        """The model was unloaded or reloaded on the host (load_duration > 0): its slots hold nothing."""
        with self._lock:
            h = self._hosts.get(host)
            if h is not None:
                self._forget_model(h, model, keep=None)

    def forget_host(self, host: str) -> None:
        """The host was removed from the cluster: drop everything, counters and rates included."""
        with self._lock:
            h = self._hosts.pop(host, None)
            if h is not None:
                for entries in h.models.values():
                    for e in entries:
                        e.alive = False
                for d in h.displaced:
                    d.alive = False
            self.rates.forget_host(host)

    def _forget_model(self, h: HostShadow, model: str, keep: Optional[SlotEntry]) -> int:
        forgot = 0
        entries = h.models.get(model)
        if entries is not None:
            for e in entries:
                if e is not keep and e.blocks is not None:
                    self._clear(h, e)
                    forgot += 1
            if keep is None and not any(e.busy for e in entries):
                for e in entries:
                    e.alive = False
                del h.models[model]
        for d in [d for d in h.displaced if d.model == model]:
            self._remove_displaced(h, d)
            forgot += 1
        return forgot

    # ----------------------------------------------------------------------------------- storage

    def _fill(self, h: HostShadow, e: SlotEntry, blocks: Any, chars: int, bc: int, anchor: int,
              session: Optional[str]) -> None:
        cap = self.settings.max_blocks_per_host
        if len(blocks) > cap:  # a prefix of chained blocks is itself a valid (shorter) prompt
            blocks = blocks[:cap]
            chars = cap * bc
        e.blocks, e.chars, e.bc, e.anchor, e.session = blocks, chars, bc, anchor, session
        h.nblocks += len(blocks)

    def _clear(self, h: HostShadow, e: SlotEntry) -> None:
        if e.blocks is not None:
            h.nblocks -= len(e.blocks)
            e.blocks = None
            e.chars = 0

    def _add_displaced(self, h: HostShadow, d: SlotEntry) -> None:
        if not len(d.blocks):
            self._clear(h, d)
            return
        h.displaced[d] = None
        h.dindex.setdefault((d.model, d.blocks[0]), {})[d] = None
        limit = self.settings.displaced_per_host
        while len(h.displaced) > limit:
            self._remove_displaced(h, next(iter(h.displaced)))

    def _remove_displaced(self, h: HostShadow, d: SlotEntry) -> None:
        if d in h.displaced:
            del h.displaced[d]
            k = (d.model, d.blocks[0])
            bucket = h.dindex.get(k)
            if bucket is not None:
                bucket.pop(d, None)
                if not bucket:
                    del h.dindex[k]
            d.alive = False
            self._clear(h, d)

    def _trim(self, h: HostShadow, keep: Optional[SlotEntry] = None) -> None:
        """Bound the blocks kept for the host: least recently used first, displaced prompts before slots."""
        cap = self.settings.max_blocks_per_host
        while h.nblocks > cap and h.displaced:
            self._remove_displaced(h, next(iter(h.displaced)))
        if h.nblocks > cap:
            idle = sorted((e for entries in h.models.values() for e in entries
                           if e.blocks is not None and not e.busy and e is not keep), key=lambda e: e.used)
            for e in idle:
                if h.nblocks <= cap:
                    break
                self._clear(h, e)

    def _resize(self, h: HostShadow, entries: list[SlotEntry], n: int, model: str) -> None:
        """The model has n slots: add empty ones, drop idle ones beyond n (from the end)."""
        while len(entries) < n:
            entries.append(SlotEntry(model))
        while len(entries) > n and not entries[-1].busy:
            e = entries.pop()
            self._clear(h, e)
            e.alive = False

    # ----------------------------------------------------------------------------------- prefill rate

    def prefill_s(self, host: str, model: str, uncached_chars: int) -> float:
        """Seconds the host would take to evaluate this many uncached characters of a prompt for `model`:
        its measured rate, else its other models', else the mean of the measured hosts, else the default."""
        with self._lock:
            return self._prefill_s(host, model, uncached_chars)

    def _prefill_s(self, host: str, model: str, chars: int) -> float:
        return self.rates.seconds(host, model, chars)

    def rate_samples(self, host: str, model: str) -> int:
        """Evaluations the host's prefill rate for `model` was learned from (0: a borrowed or default rate)."""
        with self._lock:
            return self.rates.samples(host, model)

    def prefill_rate(self, host: str) -> Optional[float]:
        """The host's measured prefill rate in seconds per 1,000 characters (mean over its models), or None."""
        with self._lock:
            return self.rates.host_s_per_kchar(host)

    # ----------------------------------------------------------------------------------- views

    def host_view(self, host: str) -> dict[str, Any]:
        """What the shadow holds for a host and how placing by it went (the CacheView fields, and more)."""
        with self._lock:
            h = self._hosts.get(host)
            rate = self.rates.host_s_per_kchar(host)
            if h is None:
                return dict(entries=0, blocks=0, bytes=0, hits=0, placements=0, hit_rate=None, predicted_hits=0,
                            confirmed_hits=0, corrections=0, prefill_saved_s=0.0, prefill_s_per_kchar=rate,
                            displaced=0, busy=0)
            entries = busy = 0
            size = sys.getsizeof(h) + sys.getsizeof(h.models) + sys.getsizeof(h.displaced) + sys.getsizeof(h.dindex)
            for slots in h.models.values():
                size += sys.getsizeof(slots)
                for e in slots:
                    size += sys.getsizeof(e)
                    busy += e.busy
                    if e.blocks is not None:
                        entries += 1
                        size += sys.getsizeof(e.blocks)
            for d in h.displaced:
                size += sys.getsizeof(d) + sys.getsizeof(d.blocks)
            size += sum(sys.getsizeof(b) for b in h.dindex.values())
            return dict(entries=entries, blocks=h.nblocks, bytes=size, hits=h.hits, placements=h.placements,
                        hit_rate=h.hits / h.placements if h.placements else None, predicted_hits=h.predicted_hits,
                        confirmed_hits=h.confirmed_hits, corrections=h.corrections, prefill_saved_s=h.saved_s,
                        prefill_s_per_kchar=rate, displaced=len(h.displaced), busy=busy)

    def cache_view(self, host: str) -> CacheView:
        """host_view as the snapshot's CacheView."""
        v = self.host_view(host)
        return CacheView(hit_rate=v["hit_rate"], prefill_saved_s=v["prefill_saved_s"], entries=v["entries"],
                         blocks=v["blocks"], bytes=v["bytes"], prefill_s_per_kchar=v["prefill_s_per_kchar"],
                         predicted_hits=v["predicted_hits"], confirmed_hits=v["confirmed_hits"],
                         corrections=v["corrections"])

    def slot_contents(self, host: str, model: str) -> list[Optional[tuple[int, int]]]:
        """Per slot of `model` on `host`: (chars, last block hash) of what it holds, or None (empty, busy or
        unknown). For tests and the dashboard's detail view."""
        with self._lock:
            h = self._hosts.get(host)
            if h is None:
                return []
            return [(e.chars, e.blocks[-1]) if e.blocks is not None and len(e.blocks) else None
                    for e in h.models.get(model, _EMPTY)]
