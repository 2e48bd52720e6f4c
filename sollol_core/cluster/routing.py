"""Routing: which host serves a request.

First a model-aware filter (only hosts that have the model), then one strategy orders the remaining hosts,
preferring those that already have the model loaded, so a model is not swapped in and out, while a queue
on the loaded hosts still spills over to the others.
Every strategy returns an ordered list: the gateway tries the first and retries on the next.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from typing import Mapping, Optional, Protocol, Sequence

from ..config import STRATEGIES, RoutingWeights
from ..errors import NoHostForModel
from .hosts import Host, HostRegistry, HostState, model_key

NEUTRAL_CPU_LOAD = 0.5  # a remote host's CPU load cannot be read: a neutral middle value
NEUTRAL_GPU_TERM = 0.5  # likewise 1/(1+free GiB) for a host whose GPU cannot be read
# A host with no latency sample yet is tried at once, but while that first request is out it counts as
# slow: otherwise every request arriving before the first answer would pile onto it (Finagle's penalty).
UNMEASURED_BUSY_LATENCY_S = 1.0
UNMEASURED_BUSY_COST_MS = 1e6
# p2c: a host that would have to load the model first counts as this much slower (a load takes seconds)
COLD_MODEL_PENALTY_MS = 1000.0
# A cold prompt's hosts count as equal when their scores are this close to the best: then the conversation's
# rendezvous hash chooses among them (placement), so every gateway agrees
COLD_BAND = 0.01  # performance score units (0.01 is 50 ms of latency at the default weight)
COLD_BAND_P2C_MS = 20.0  # p2c's cost


def is_cold(host: Host, model: Optional[str]) -> bool:
    """The host would have to load `model` (a model key) before answering."""
    return model is not None and model not in host.models_loaded


def performance_terms(host: Host, weights: RoutingWeights, model: Optional[str] = None,
                      prefill_s: Optional[float] = None, now: Optional[float] = None) -> dict[str, float]:
    """The original weighted score, each term first brought to a comparable scale:

    cpu_load      CPU load 0..1 (psutil, local hosts); unknown -> 0.5
    gpu_free_mem  1 / (1 + free GiB): 1.0 with none free, ~0.1 with 8 GiB; unknown -> 0.5
    priority      priority rank / 10 (rank 0 is preferred)
    latency       latency EWMA in seconds (the original latency_ms / 1000); with the cache term, the host's
                  service time less the prompt evaluations its answers reported (Host.service_ms), so the
                  prefill of the cold prompts it served is not counted again beside the expected one (the
                  in_flight term uses the same: a conversation's home is not left for a cold slot because
                  the home served a cold first turn a moment ago)
    success_rate  1 - success-rate EWMA
    in_flight     requests in flight × latency in seconds: the queue a new request would join, so one
                  good host is not flooded between metric updates (a host not measured yet counts 1 s)
    cold_model    1 when the host does not have the requested model loaded (it would load it first), so
                  models are not swapped in and out, yet a queue on the loaded hosts spills over
    cache         expected prefill seconds: the part of the prompt the host has not cached × its prefill
                  rate (only for a request with a prompt, when cache-aware placement is on)
    success_rate decays with time since the last failure, so a host that came back is tried again.
    Returned values are already multiplied by their weights. `now`: the registry's clock (time.monotonic()
    when None), which the success rate's fading is read against.
    """
    cpu = NEUTRAL_CPU_LOAD if host.cpu_load is None else min(max(host.cpu_load, 0.0), 1.0)
    gpu = NEUTRAL_GPU_TERM if host.gpu_free_mem is None else 1.0 / (1.0 + max(host.gpu_free_mem, 0.0) / 1024.0)
    latency_s = host.latency_ms / 1000.0
    if prefill_s is not None and host.service_ms > 0.0:
        latency_s = host.service_ms / 1000.0
    queue_latency_s = UNMEASURED_BUSY_LATENCY_S if host.latency_ms == 0.0 else max(latency_s, 0.001)
    if now is None:
        now = time.monotonic()
    terms = {
        "cpu_load": weights.cpu_load * cpu,
        "gpu_free_mem": weights.gpu_free_mem * gpu,
        "priority": weights.priority * host.priority / 10.0,
        "latency": weights.latency * latency_s,
        "success_rate": weights.success_rate * (1.0 - host.effective_success_rate(now)),
        "in_flight": weights.in_flight * host.in_flight * queue_latency_s,
    }
    if model is not None:  # the live score in /api/stats and the dashboard is for a request naming no model
        terms["cold_model"] = weights.cold_model * (1.0 if is_cold(host, model) else 0.0)
    if prefill_s is not None:
        terms["cache"] = weights.cache * prefill_s
    return terms


def performance_cost(host: Host, weights: RoutingWeights, model: Optional[str], prefill_s: Optional[float],
                     now: float) -> float:
    """performance_score's number alone, without its terms (what ordering hosts needs, on every request):
    the same terms added in the same order, so the two agree to the last bit."""
    cpu = NEUTRAL_CPU_LOAD if host.cpu_load is None else min(max(host.cpu_load, 0.0), 1.0)
    gpu = NEUTRAL_GPU_TERM if host.gpu_free_mem is None else 1.0 / (1.0 + max(host.gpu_free_mem, 0.0) / 1024.0)
    latency_s = host.latency_ms / 1000.0
    if prefill_s is not None and host.service_ms > 0.0:
        latency_s = host.service_ms / 1000.0
    queue_latency_s = UNMEASURED_BUSY_LATENCY_S if host.latency_ms == 0.0 else max(latency_s, 0.001)
    total = 0 + weights.cpu_load * cpu
    total += weights.gpu_free_mem * gpu
    total += weights.priority * host.priority / 10.0
    total += weights.latency * latency_s
    total += weights.success_rate * (1.0 - host.effective_success_rate(now))
    total += weights.in_flight * host.in_flight * queue_latency_s
    if model is not None:
        total += weights.cold_model * (1.0 if is_cold(host, model) else 0.0)
    if prefill_s is not None:
        total += weights.cache * prefill_s
    return total / host.weight


def performance_score(host: Host, weights: RoutingWeights, model: Optional[str] = None,
                      prefill_s: Optional[float] = None, now: Optional[float] = None) -> tuple[float, dict[str, float]]:
    """Sum of the weighted terms, divided by the host weight (a weight-2 host counts half as loaded)."""
    terms = performance_terms(host, weights, model, prefill_s, now)
    return sum(terms.values()) / host.weight, terms


class Strategy(Protocol):
    name: str
    weighs_cache: bool  # the expected prefill counts in its order (cache-aware placement uses a prompt key)

    def order(self, candidates: Sequence[Host], weights: RoutingWeights, model: Optional[str] = None,
              prefill: Optional[Mapping[str, float]] = None) -> list[Host]:
        """Best first. `candidates` is non-empty and already filtered; `model` is the requested model's
        key (None when the request names none); `prefill` the expected prefill seconds per host address
        (cache-aware placement; None when the request has no prompt or the cache is off)."""

    def cold_scores(self, candidates: Sequence[Host], weights: RoutingWeights, model: Optional[str],
                    prefill: Mapping[str, float]) -> tuple[dict[str, float], float]:
        """Each host's score as `order` weighs it (lower is better), and the band within which two hosts
        count as equal for a prompt no host has cached (only asked of strategies that weigh the cache)."""

    def seconds_cost(self, host: Host, weights: RoutingWeights, seconds: float) -> float:
        """`seconds` of prefill on `host` in the units of its score (as the cache term counts them)."""


class _IgnoresCache:
    weighs_cache = False

    def cold_scores(self, candidates: Sequence[Host], weights: RoutingWeights, model: Optional[str],
                    prefill: Mapping[str, float]) -> tuple[dict[str, float], float]:
        return {h.address: 0.0 for h in candidates}, 0.0

    def seconds_cost(self, host: Host, weights: RoutingWeights, seconds: float) -> float:
        return 0.0


class PerformanceStrategy:
    name = "performance"
    weighs_cache = True

    def order(self, candidates: Sequence[Host], weights: RoutingWeights, model: Optional[str] = None,
              prefill: Optional[Mapping[str, float]] = None) -> list[Host]:
        now = time.monotonic()
        if prefill is None:
            return sorted(candidates, key=lambda h: (performance_cost(h, weights, model, None, now), h.address))
        return sorted(candidates, key=lambda h: (performance_cost(h, weights, model, prefill.get(h.address, 0.0),
                                                                  now), h.address))

    @staticmethod
    def score(host: Host, weights: RoutingWeights, model: Optional[str] = None,
              prefill: Optional[Mapping[str, float]] = None) -> float:
        return performance_cost(host, weights, model, None if prefill is None else prefill.get(host.address, 0.0),
                                time.monotonic())

    def cold_scores(self, candidates: Sequence[Host], weights: RoutingWeights, model: Optional[str],
                    prefill: Mapping[str, float]) -> tuple[dict[str, float], float]:
        return {h.address: self.score(h, weights, model, prefill) for h in candidates}, COLD_BAND

    def seconds_cost(self, host: Host, weights: RoutingWeights, seconds: float) -> float:
        return weights.cache * seconds / host.weight


class RoundRobinStrategy(_IgnoresCache):
    name = "round_robin"

    def __init__(self) -> None:
        self._counter = itertools.count()

    def order(self, candidates: Sequence[Host], weights: RoutingWeights, model: Optional[str] = None,
              prefill: Optional[Mapping[str, float]] = None) -> list[Host]:
        ordered = sorted(candidates, key=lambda h: h.address)
        start = next(self._counter) % len(ordered)
        return ordered[start:] + ordered[:start]


class PriorityStrategy(_IgnoresCache):
    """Lowest priority rank first; within a rank, hosts with the model loaded, then fewest in flight."""

    name = "priority"

    def order(self, candidates: Sequence[Host], weights: RoutingWeights, model: Optional[str] = None,
              prefill: Optional[Mapping[str, float]] = None) -> list[Host]:
        return sorted(candidates, key=lambda h: (h.priority, is_cold(h, model), h.in_flight, h.address))


class P2CStrategy:
    """Power of two choices on peak-EWMA latency × (in flight + 1) / weight, as Finagle and Linkerd do it.

    Two hosts are drawn at random and the cheaper one goes first; the rest follow by cost, for retries.
    With cache-aware placement the expected prefill counts in the cost (× the cache weight), and the host
    with the least prefill to do is always one of the two, so a cached prompt's home is never left out by
    the draw.
    """

    name = "p2c"
    weighs_cache = True

    def __init__(self, rng: Optional[random.Random] = None) -> None:
        self._rng = rng or random.Random()

    @staticmethod
    def cost(host: Host, now: Optional[float] = None, model: Optional[str] = None,
             prefill_s: float = 0.0) -> float:
        if host.peak_latency_ms == 0.0 and host.in_flight > 0:
            return UNMEASURED_BUSY_COST_MS
        peak = host.current_peak_ms(time.monotonic() if now is None else now)
        if is_cold(host, model):
            peak += COLD_MODEL_PENALTY_MS
        return (peak + prefill_s * 1000.0) * (host.in_flight + 1) / host.weight

    def order(self, candidates: Sequence[Host], weights: RoutingWeights, model: Optional[str] = None,
              prefill: Optional[Mapping[str, float]] = None) -> list[Host]:
        now = time.monotonic()
        shares: Mapping[str, float] = prefill if prefill is not None and weights.cache > 0 else {}
        use = bool(shares)
        cost = {h.address: self.cost(h, now, model, weights.cache * shares.get(h.address, 0.0)) for h in candidates}
        by_cost = sorted(candidates, key=lambda h: (cost[h.address], h.address))
        if len(candidates) < 2:
            return by_cost
        if use and len(set(shares.values())) > 1:
            home = min(candidates, key=lambda h: (shares.get(h.address, 0.0), h.address))
            a, b = home, self._rng.choice([h for h in candidates if h is not home])
        else:
            a, b = self._rng.sample(list(candidates), 2)
        first = a if (cost[a.address], a.address) <= (cost[b.address], b.address) else b
        return [first] + [h for h in by_cost if h is not first]

    def cold_scores(self, candidates: Sequence[Host], weights: RoutingWeights, model: Optional[str],
                    prefill: Mapping[str, float]) -> tuple[dict[str, float], float]:
        now = time.monotonic()
        return ({h.address: self.cost(h, now, model, weights.cache * prefill.get(h.address, 0.0))
                 for h in candidates}, COLD_BAND_P2C_MS)

    def seconds_cost(self, host: Host, weights: RoutingWeights, seconds: float) -> float:
        return weights.cache * seconds * 1000.0 * (host.in_flight + 1) / host.weight


def make_strategy(name: str, rng: Optional[random.Random] = None) -> Strategy:
    if name == "performance":
        return PerformanceStrategy()
    if name == "round_robin":
        return RoundRobinStrategy()
    if name == "priority":
        return PriorityStrategy()
    if name == "p2c":
        return P2CStrategy(rng)
    raise ValueError(f"unknown routing strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


class Router:
    """Owns the live strategy and weights; both can be changed at run time from any thread."""

    def __init__(self, registry: HostRegistry, strategy: str = "performance",
                 weights: Optional[RoutingWeights] = None, rng: Optional[random.Random] = None) -> None:
        self.registry = registry
        self._rng = rng
        self._lock = threading.Lock()
        self._strategy: Strategy = make_strategy(strategy, rng)
        self._weights = weights or RoutingWeights()

    @property
    def strategy_name(self) -> str:
        return self._strategy.name

    @property
    def weights(self) -> RoutingWeights:
        return self._weights

    def set_strategy(self, name: str) -> None:
        strategy = make_strategy(name, self._rng)
        with self._lock:
            self._strategy = strategy

    def set_weights(self, **changes: float) -> RoutingWeights:
        """Validated as a whole, then swapped in: a reader never sees half-applied weights."""
        merged = self._weights.model_dump() | changes
        new = RoutingWeights.model_validate(merged)
        with self._lock:
            self._weights = new
        return new

    def score(self, host: Host) -> tuple[float, dict[str, float]]:
        """The live score of a host for a request naming no model (/api/stats, the dashboard), as of the
        registry's clock."""
        return performance_score(host, self._weights, now=self.registry.clock())

    def candidates(self, model: Optional[str], exclude: frozenset[str] = frozenset()) -> list[Host]:
        """Hosts that may take a new request for `model`.

        Healthy hosts that have the model (or whose list is not known yet); as a last resort, unhealthy
        hosts that have it (a host may have come back since its last failure). Draining and disabled
        hosts take nothing new. Whether a host has the model loaded is the strategies' business: they
        prefer loaded hosts without starving the others.
        """
        everyone = self.registry.hosts()
        key = model_key(model) if model else None
        healthy: list[Host] = []
        unhealthy: list[Host] = []
        lacking = 0  # hosts whose model list is known and does not list the model
        for h in everyone:
            listed = h.models_available
            if key is not None and listed is not None and key not in listed:
                lacking += 1
                continue
            if h.address in exclude:
                continue
            if h.state is HostState.HEALTHY:
                healthy.append(h)
            elif h.state is HostState.UNHEALTHY:
                unhealthy.append(h)
        if key is not None and everyone and lacking == len(everyone):
            raise NoHostForModel(model or "")
        return healthy or unhealthy

    def current(self) -> tuple[Strategy, RoutingWeights]:
        """The live strategy and weights, read together."""
        with self._lock:
            return self._strategy, self._weights

    def route(self, model: Optional[str], exclude: frozenset[str] = frozenset()) -> list[Host]:
        """Ordered hosts to try for one request ([] when none can take it)."""
        tier = self.candidates(model, exclude)
        if not tier:
            return []
        strategy, weights = self.current()
        return strategy.order(tier, weights, model_key(model) if model else None)
