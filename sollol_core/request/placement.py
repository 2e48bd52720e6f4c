"""Placement: which host serves a request now, and why, in numbers.

    candidates   the model filter, health and drain (Router.candidates), minus (host, model) pairs that
                 could not load the model lately, minus hosts the request may not use (its host_filter)
    room         hosts with a free slot for the model (slots.SlotTable); none: the request waits
    estimates    per host, what its prompt cache holds of this prompt (cache.CacheShadow) and the prefill it
                 would still do (uncached characters × the host's prefill rate); a host whose loaded runner
                 differs from the request's runner options (prompt_cache.runner) adds its measured load time
                 and keeps none of its cache, with or without a prompt
    probe        a host full at the slots it learns (cluster.slot_learning) may take one request above them
                 now and then, to see whether the host runs it at once: when no host has room, or, where the
                 slots were learned, beside hosts with room (weighed like them: it takes the request only
                 where it looks best, as a host held to too few slots does)
    bounded load no host takes more than (1 + epsilon) × its share (by slots) of the requests in flight,
                 so a hot prefix's home that is full sends the request to a second host, which caches it too
    scorers      the live strategy orders the hosts with room; performance and p2c add the expected prefill
                 (× the `cache` weight), round_robin and priority ignore it
    picker       a request that matches no host's cache goes where it displaces the least: not where it
                 would evict a conversation still going, among near-equal hosts by rendezvous hash on the
                 conversation (or session key), so two gateways agree and a restarted one sends it home;
                 a slow host with room takes it only when it would finish sooner than waiting for a full
                 faster host; a host ramping up after coming back gets its probe share (slow start)

`decide` returns a Decision (hosts to try, best first, with the reason), a Wait (candidates exist but
none should take it now) or None (no host can take it at all).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Union

from ..cluster.hosts import Host, HostRegistry, model_key
from ..cluster.routing import Router, Strategy
from ..cluster.slots import SlotTable
from ..config import RoutingWeights, SollolConfig
from ..errors import NoHostForModel
from ..prompt_cache.liveness import still_going
from .call import Call

if TYPE_CHECKING:
    from ..prompt_cache.key import PromptKey
    from ..prompt_cache.runner import RunnerTable
    from ..prompt_cache.shadow import CacheShadow
    from ..prompt_cache.shadow_state import CacheMatch

# A cold prompt's hosts count as equal when their scores are within the strategy's band of the best, or
# within this share of the best when that is larger (routing.Strategy.cold_scores)
COLD_BAND_SHARE = 0.05
VICTIM_GRAIN_S = 30.0  # slots whose last use is this close in age displace alike (the hash chooses among them)
UNMEASURED_SERVICE_S = 1.0  # a host with no latency sample yet is assumed to take this long
RETURN_TURNS = 3.0  # an evicted conversation pays its prompt again on about this many of its next turns
RATE_SPREAD = 0.5  # relative error of a prefill rate learned from one answer, times sqrt(2) (see _cold_pick)


@dataclass(slots=True)
class Estimate:
    """What placing this request on one host would cost, as far as SOLLOL can tell."""

    host: str
    cached_chars: int = 0
    prompt_chars: int = 0
    prefill_s: float = 0.0
    evicts_active: bool = False
    victim_idle_s: float = math.inf
    displaced: bool = False
    over_bound: bool = False
    match: Optional["CacheMatch"] = None  # the shadow's figures behind these (placing on this host reuses them)
    rate_samples: int = 0  # evaluations its prefill rate was learned from (0: borrowed or the default)
    evicted_s: float = 0.0  # prefill the conversation it would evict would do again on its next turn
    reload_s: float = 0.0  # its loaded runner differs from the request's: a reload (included in prefill_s)

    @property
    def fraction(self) -> float:
        return self.cached_chars / self.prompt_chars if self.prompt_chars else 0.0


@dataclass
class Decision:
    order: list[Host]  # hosts to try, best first; all had room when decided
    reason: str  # why order[0], in words and numbers
    estimates: dict[str, Estimate] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.order[0].address


@dataclass(frozen=True)
class Wait:
    reason: str  # why nothing is placed now (all slots taken; a faster host frees first)


@dataclass(frozen=True)
class Keep:
    """Slots a request may not take, left free for other clients using the model (queue.fair_share)."""

    slots: Mapping[str, int]  # host -> slots kept there
    own: frozenset[str] = frozenset()  # hosts where the request's client holds slots: one of those freeing is its


def _runner_reason(host: Host, estimates: dict[str, Estimate], reason: str) -> str:
    """The runner's part of a reason: a reload on the chosen host, or the hosts it kept the request from."""
    e = estimates.get(host.address)
    if e is not None and e.reload_s:
        return f"{reason}; runner differs: reload est. {e.reload_s:.2f} s"
    others = sum(1 for x in estimates.values() if x.reload_s)
    return f"{reason}; runner matches ({others} host(s) would reload)" if others else reason


def _kchars(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def rendezvous(key: str, host: str) -> int:
    """Highest-random-weight hash: the same key ranks the same hosts alike in every process."""
    return int.from_bytes(hashlib.blake2b(f"{key}|{host}".encode(), digest_size=8).digest(), "big")


class Placement:
    def __init__(self, config: SollolConfig, registry: HostRegistry, router: Router, slots: SlotTable,
                 shadow: Optional["CacheShadow"], num_parallel: Callable[[str], Optional[int]], *,
                 runners: Optional["RunnerTable"] = None) -> None:
        self.config = config
        self.registry = registry
        self.router = router
        self.slots = slots
        self.shadow = shadow
        self.num_parallel = num_parallel
        self.runners = runners
        self._probes: dict[str, int] = {}  # slow start: placements seen per ramping host

    # what a host's cache is shadowed with: its slots, or 1 (Ollama's default) when nobody said
    def shadow_slots(self, host: str, embedding: bool = False) -> int:
        if embedding:
            return 1
        return self.num_parallel(host) or 1

    def service_s(self, host: Host) -> float:
        return host.latency_ms / 1000.0 if host.latency_ms > 0 else UNMEASURED_SERVICE_S

    def uses_prompt(self, call: Call) -> bool:
        """The fast lane: only a request that can gain from the prompt cache pays for its canonical prompt.
        It must be an inference request (not an embedding) of at least cache.min_prompt_chars, with the
        cache on and weighed by the live strategy, for a model that more than one host could take."""
        settings = self.config.cache
        if self.shadow is None or call.embedding or not settings.enabled or call.data is None:
            return False
        strategy, weights = self.router.current()
        if not strategy.weighs_cache or weights.cache <= 0:
            return False
        if isinstance(call.body, bytes) and len(call.body) < settings.min_prompt_chars:
            return False  # the JSON body holds the prompt and more: shorter than the threshold, so is the prompt
        try:
            return len(self.candidates(call)) > 1
        except NoHostForModel:
            return False

    # the stages ------------------------------------------------------------------------------------
    def candidates(self, call: Call, exclude: frozenset[str] = frozenset()) -> list[Host]:
        """Router.candidates (raises NoHostForModel) minus unfit (host, model) pairs and filtered hosts."""
        hosts = self.router.candidates(call.model, exclude)
        if call.host_filter is not None:
            hosts = [h for h in hosts if call.host_filter(h.address)]
        if call.model and self.slots.ever_unfit:
            hosts = [h for h in hosts if not self.slots.is_unfit(h.address, call.model)]
        return hosts

    def decide(self, call: Call, exclude: frozenset[str] = frozenset(), ahead: int = 0,
               reserve: int = 0, pipeline: int = 0,
               keep: Optional[Keep] = None) -> Union[Decision, Wait, None]:
        """`ahead`: requests for the same model placed before this one in this dispatch round (they take
        the slots that free first). A batch request is asked with `reserve` (slots of each host with two or
        more it may not take: interactive requests wait for them) or `pipeline` (requests a host with a single
        slot for the model may hold beyond it, waiting inside the host, so that it does not idle for the
        round trip between two batch chunks). `keep`: slots per host this request may not take, left free for
        other clients (queue.fair_share)."""
        hosts = self.candidates(call, exclude)
        if not hosts:
            return None
        room: list[Host] = []
        full: list[Host] = []
        held = 0
        kept: list[Host] = []  # full for this request only: their free slots are kept for other clients
        if not call.uses_slot:
            room = hosts
        else:
            has_room = self.slots.has_room
            for h in hosts:
                adjust = 0
                if reserve or pipeline:
                    slots = self.slots.slots(h.address, call.model, call.embedding)
                    if reserve and slots is not None and slots >= 2:
                        adjust = -min(reserve, slots - 1)
                    elif pipeline and slots == 1:  # one slot (an embedding model): the next one waits inside
                        adjust = pipeline
                kept_here = keep.slots.get(h.address, 0) if keep is not None else 0
                if kept_here and -kept_here < adjust:
                    adjust = -kept_here
                if has_room(h.address, call.model, call.embedding, adjust):
                    room.append(h)
                else:
                    full.append(h)
                    if adjust < 0 and has_room(h.address, call.model, call.embedding):
                        if kept_here and adjust == -kept_here:
                            kept.append(h)
                        else:
                            held += 1
        probing: frozenset[str] = frozenset()
        if room and full and call.uses_slot and not (reserve or pipeline or kept):
            room, full, probing = self._with_probes(call, room, full)
        key = call.prompt if (self.shadow is not None and self.config.cache.enabled) else None
        if not room:
            if held:
                return Wait(f"{held} host(s) hold slots for interactive requests (queue.interactive_reserve); "
                            f"the others are busy")
            if kept:
                return Wait(f"its client leaves slots free on {len(kept)} host(s) for the other clients using "
                            f"{call.model or 'the model'} (queue.fair_share); the others are busy")
            # a probe never goes where it would make the host reload, nor takes a reserved slot
            reloads = self._reload_costs(call, model_key(call.model) if call.model else "", full)
            probe = next((h for h in full if h.address not in reloads
                          and self.slots.may_probe(h.address, call.model, call.embedding)), None)
            if probe is None:
                return Wait(f"all {len(hosts)} host(s) busy: every slot for {call.model or 'this request'} is taken")
            slots = self.slots.slots(probe.address, call.model, call.embedding)
            return Decision([probe], f"probe: one above the {slots} slot(s) learned there",
                            self._estimates(call, [probe], key))
        strategy, weights = self.router.current()
        model = model_key(call.model) if call.model else None
        if len(room) == 1 and not full:  # one host can take it: nothing to weigh, only the reason to tell
            estimates = self._estimates(call, room, key)
            order, reason = self._slow_start(room, self._reason(room[0], estimates, key, room, room))
            return Decision(order, _runner_reason(order[0], estimates, reason), estimates)
        estimates = self._estimates(call, room + full, key)
        bounded = room
        if key is not None and weights.cache > 0:
            bounded = self._bounded(room, estimates, model or "")
        prefill = {a: e.prefill_s for a, e in estimates.items()} if estimates else None
        ranked = strategy.order(room, weights, model, prefill)  # once: round_robin counts its calls
        if bounded is room:
            order = list(ranked)
        else:  # by address: a Host's generated __eq__ compares every field
            inside = {h.address for h in bounded}
            order = [h for h in ranked if h.address in inside] + [h for h in ranked if h.address not in inside]
        reason = self._reason(order[0], estimates, key, bounded, room)
        if key is not None and prefill is not None and strategy.weighs_cache and weights.cache > 0:
            order, reason = self._cold_pick(order, bounded, estimates, key, strategy, weights, model, prefill,
                                            reason)
        order, reason = self._slow_start(order, reason)
        reason = _runner_reason(order[0], estimates, reason)
        if keep is not None and kept:  # a slot freeing there is this request's only if it is its client's own
            kept_at = {h.address for h in kept}
            full = [h for h in full if h.address not in kept_at or h.address in keep.own]
        if full and call.uses_slot:
            better = self._faster_when_free(order[0], full, estimates, call, ahead)
            if better is not None:
                return Wait(better)
        if order[0].address in probing:
            slots = self.slots.slots(order[0].address, call.model, call.embedding)
            reason = f"{reason}; probe: one above the {slots} slot(s) learned there"
        return Decision(order, reason, estimates)

    def _with_probes(self, call: Call, room: list[Host], full: list[Host]
                     ) -> tuple[list[Host], list[Host], frozenset[str]]:
        """A host full at the slots it learned competes beside the hosts with room, now and then (the probe's
        backoff), while one of those runs more of the model at once than it is allowed: a loaded machine's
        stretched answers can teach a host too few slots, and while others have room no request waits in the
        gateway for it to probe otherwise. It is weighed like the others, so it takes the request only where
        it looks best (a host held to too few slots does: it carries little); never where it would reload."""
        slots = self.slots
        busiest = max(slots.in_use(h.address, call.model) for h in room)
        probing = [h for h in full if slots.may_probe(h.address, call.model, call.embedding, learned_only=True)
                   and (slots.slots(h.address, call.model, call.embedding) or 0) < busiest]
        if not probing:
            return room, full, frozenset()
        reloads = self._reload_costs(call, model_key(call.model) if call.model else "", probing)
        chosen = frozenset(h.address for h in probing if h.address not in reloads)
        if not chosen:
            return room, full, chosen
        return (room + [h for h in full if h.address in chosen], [h for h in full if h.address not in chosen],
                chosen)

    def estimate_wait_s(self, call: Call, ahead: int) -> float:
        """Expected wait for a request with `ahead` requests before it: they drain at the candidates'
        summed slot rate (slots ÷ service time)."""
        try:
            hosts = self.candidates(call)
        except Exception:  # noqa: BLE001 - no model anywhere: nothing to wait for
            return 0.0
        rate = 0.0
        for h in hosts:
            slots = self.slots.slots(h.address, call.model, call.embedding) or 1
            rate += slots / self.service_s(h)
        return (ahead + 1) / rate if rate > 0 else UNMEASURED_SERVICE_S * (ahead + 1)

    # pieces ----------------------------------------------------------------------------------------
    def _estimates(self, call: Call, hosts: list[Host], key: Optional["PromptKey"]) -> dict[str, Estimate]:
        model = model_key(call.model) if call.model else ""
        reloads = self._reload_costs(call, model, hosts)
        if key is None or self.shadow is None:  # no prompt to weigh: only the runner, where one differs
            return {h.address: Estimate(host=h.address, prefill_s=reloads.get(h.address, 0.0),
                                        reload_s=reloads.get(h.address, 0.0)) for h in hosts} if reloads else {}
        out = {}
        gap = self.shadow.return_gap_s()
        for h in hosts:
            m = self.shadow.match(h.address, key, self.shadow_slots(h.address, call.embedding))
            going = still_going(m.victim_idle_s, gap) if m.evicts_active else 0.0
            reload_s = reloads.get(h.address, 0.0)
            cached = 0 if reload_s else m.cached_chars  # a reload drops every slot's cache
            out[h.address] = Estimate(host=h.address, cached_chars=cached, prompt_chars=key.chars,
                                      prefill_s=self.shadow.prefill_s(h.address, model, max(0, key.chars - cached)) + reload_s,
                                      evicts_active=going >= 0.5, victim_idle_s=m.victim_idle_s,
                                      displaced=m.displaced and not reload_s, match=m, reload_s=reload_s,
                                      rate_samples=self.shadow.rate_samples(h.address, model),
                                      evicted_s=self._eviction_s(hosts, model, m.victim_chars) * going
                                      if going else 0.0)
        return out

    def _eviction_s(self, hosts: list[Host], model: str, chars: int) -> float:
        """What evicting a conversation of `chars` still going costs it: its prompt evaluated again on the
        turns to come (RETURN_TURNS of them, each paying part of it as the cache it finds elsewhere is
        lost in turn), at the cluster's mean rate: it will be placed anywhere, not where it was."""
        assert self.shadow is not None
        rates = [self.shadow.prefill_s(h.address, model, chars) for h in hosts]
        return RETURN_TURNS * sum(rates) / len(rates) if rates else 0.0

    def _reload_costs(self, call: Call, model: str, hosts: list[Host]) -> dict[str, float]:
        """Per host whose loaded runner differs from the request's runner options: its load time."""
        if self.runners is None or call.runner is None or not model:
            return {}
        return self.runners.reload_costs(model, call.runner, (h.address for h in hosts))

    def _bounded(self, room: list[Host], estimates: dict[str, Estimate], model: str) -> list[Host]:
        """Bounded load for cache affinity: a host over (1 + epsilon) × its share (by slots) of the requests
        in flight is not a prompt's home now. Where every host's slots are known the share is exact and the
        bound is hard (the host goes last); where some are not (shadowed as one slot each, whatever they run)
        an over-bound host only loses its cache advantage, and is weighed on its other terms like any host,
        so a fast host that nobody configured is not held to a slow one's share."""
        if len(room) < 2:
            return list(room)
        eps = self.config.cache.load_epsilon
        everyone = [h for h in self.registry.hosts() if h.available]
        total_slots = sum(self.shadow_slots(h.address) for h in everyone) or 1
        in_flight = sum(h.in_flight for h in everyone)
        known = all(self.num_parallel(h.address) is not None for h in room)
        out = []
        for h in room:
            share = self.shadow_slots(h.address) / total_slots
            cap = max(1.0, (1 + eps) * (in_flight + 1) * share)
            e = estimates.get(h.address)
            if h.in_flight + 1 <= math.ceil(cap):
                out.append(h)
                continue
            if e is not None and e.match is not None and e.match.same_conversation and e.cached_chars:
                out.append(h)  # its own conversation's slot, free: the bound spreads shared prefixes, not this
                continue
            if e is not None:
                e.over_bound = True
            if known:
                continue  # hard: its share is exact
            if e is None or not e.cached_chars:
                out.append(h)  # nothing cached to take away
                continue
            if self.shadow is not None:
                e.prefill_s = self.shadow.prefill_s(h.address, model, e.prompt_chars) + e.reload_s
            out.append(h)
        return out or list(room)

    def _reason(self, host: Host, estimates: dict[str, Estimate], key: Optional["PromptKey"], bounded: list[Host],
                room: list[Host]) -> str:
        e = estimates.get(host.address)
        if key is None or e is None:
            return "no prompt cache term" if key is None and self.config.cache.enabled else "scored"
        if e.cached_chars and e.over_bound:  # kept on its other terms (slots unknown): no cache advantage
            text = (f"cached {e.fraction:.0%} but over its load bound, placed on its other terms; "
                    f"est. {e.prefill_s:.2f} s")
        elif e.cached_chars:
            where = "displaced, in host RAM" if e.displaced else "cached"
            text = (f"{where} {e.fraction:.0%} ({_kchars(e.cached_chars)} of {_kchars(e.prompt_chars)} chars), "
                    f"est. {e.prefill_s:.2f} s")
        else:
            text = f"cold; est. {e.prefill_s:.2f} s prefill"
        homes = [a for a, x in estimates.items() if x.over_bound and x.cached_chars > e.cached_chars]
        if homes:
            text += f"; home {homes[0]} over its load bound"
        return text

    def _cold_pick(self, order: list[Host], bounded: list[Host], estimates: dict[str, Estimate],
                   key: "PromptKey", strategy: Strategy, weights: RoutingWeights, model: Optional[str],
                   prefill: dict[str, float], reason: str) -> tuple[list[Host], str]:
        """No host has any of this prompt. It takes a slot that holds no conversation still going wherever
        one is free (its own conversation then lives there: evicting another would cost that one its next
        turn's prefill, and send it looking for a slot in turn); among near-equal hosts the conversation's
        rendezvous hash chooses, so its home is the same for every gateway."""
        if any(estimates[h.address].cached_chars for h in order if h.address in estimates):
            return order, reason
        inside = {h.address for h in bounded}
        pool = [h for h in order if h.address in inside] or order
        keeping = [h for h in pool if not estimates[h.address].evicts_active]
        kept = len(pool) - len(keeping) if keeping else 0
        pool = keeping or pool
        scores, band = strategy.cold_scores(pool, weights, model, prefill)
        # evicting a conversation still going costs it its next turn's prefill: counted against the host
        cost = {h.address: scores[h.address] + strategy.seconds_cost(h, weights, estimates[h.address].evicted_s)
                for h in pool}
        # how far off each prefill estimate may be: a rate learned from n answers is known to about
        # RATE_SPREAD / sqrt(n + 1) of itself (one answer: about a third; a borrowed or default rate: half)
        spread = {h.address: strategy.seconds_cost(h, weights, RATE_SPREAD * estimates[h.address].prefill_s /
                                                   math.sqrt(estimates[h.address].rate_samples + 1)) for h in pool}
        best = min(pool, key=lambda h: cost[h.address])
        floor = cost[best.address]
        # the band is a share of the best host's own score: not of what evicting costs, which every host with
        # a conversation in its slots adds alike, and which would widen the band to take in slower hosts
        slack = max(band, COLD_BAND_SHARE * abs(scores[best.address]))

        def near(h: Host) -> bool:
            """Equal to the best within the strategy's band, or within what their prefill rates are known to
            (a rate learned from one answer says little: two such hosts are not told apart by it)."""
            return cost[h.address] <= floor + slack + math.hypot(spread[best.address], spread[h.address])

        quiet = [h for h in pool if near(h)]
        ident = key.session or str(key.anchor)
        # what it would displace: an empty slot first, then the coldest; equals by the conversation's hash
        pick = max(quiet, key=lambda h: (min(estimates[h.address].victim_idle_s, 1e9) // VICTIM_GRAIN_S,
                                         rendezvous(ident, h.address)))
        why = "cold; rendezvous" if len(quiet) > 1 else "cold; balanced"
        if kept:
            why += f", {kept} host(s) keep a conversation still going"
        elif estimates[quiet[0].address].evicts_active:
            why += ", every slot holds a conversation still going"
        e = estimates[pick.address]
        return [pick] + [h for h in order if h is not pick], f"{why}; est. {e.prefill_s:.2f} s prefill"

    def _slow_start(self, order: list[Host], reason: str) -> tuple[list[Host], str]:
        """A host back in rotation gets every n-th request first, n shrinking as it ramps up."""
        now = time.monotonic()
        for h in order[1:]:
            share = h.slow_start_share(now)
            if share is None:
                self._probes.pop(h.address, None)
                continue
            seen = self._probes.get(h.address, 0) + 1
            self._probes[h.address] = seen
            every = max(1, round(1 / share))
            if seen % every == 0:
                return [h] + [x for x in order if x is not h], f"slow start: back in rotation, 1 in {every}"
        return order, reason

    def _faster_when_free(self, chosen: Host, full: list[Host], estimates: dict[str, Estimate],
                          call: Call, ahead: int) -> Optional[str]:
        """A reason to wait when a full host would finish this request sooner than `chosen` would. Each
        host's own part is its service time beside the prefill it would do (net of the prefill its answers
        reported, where a prefill is estimated) and what evicting a conversation still going would cost."""
        if chosen.latency_ms <= 0:
            return None  # not measured: no grounds to hold the request back

        def own(h: Host) -> float:
            e = estimates.get(h.address)
            if e is None:
                return self.service_s(h)
            net = h.service_ms / 1000.0 if h.service_ms > 0 else self.service_s(h)
            return net + e.prefill_s + e.evicted_s

        mine = own(chosen)
        best: Optional[tuple[float, Host]] = None
        for f in full:
            if f.latency_ms <= 0 or not f.available:
                continue
            service = self.service_s(f)
            slots = self.slots.slots(f.address, call.model, call.embedding) or 1
            theirs = self.slots.next_free_in(f.address, call.model, service) + (ahead / slots) * service + own(f)
            if theirs < mine and (best is None or theirs < best[0]):
                best = (theirs, f)
        if best is None:
            return None
        return (f"waiting for {best[1].address}: est. done in {best[0]:.2f} s there against {mine:.2f} s on "
                f"{chosen.address}")

