"""Host and HostRegistry: the one source of truth for host state.

The registry is read from the core loop (router, gateway), from the dashboard thread (snapshot) and from
the Prometheus collector, so every read and write goes through one lock; all operations are O(hosts).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from functools import lru_cache
from typing import Callable, Iterable, Optional

from ..errors import UnknownHost
from ..observability.snapshot import HostView

PEAK_EWMA_TAU_S = 10.0  # decay time constant of the peak-EWMA latency (Finagle uses 10 s)
LATENCY_ALPHA = 0.3  # weight of a new sample in the display EWMA
SUCCESS_ALPHA = 0.1  # weight of a new outcome in the success-rate EWMA
# The failures a host's success rate remembers fade with this time constant (and a health check answered
# after a failure halves them), so a host that came back is not kept last by its past: measured before,
# a restarted node got no traffic for over a minute because its average recovered only through requests.
SUCCESS_DECAY_TAU_S = 20.0
SLOW_START_S = 30.0  # a host back in rotation ramps up over this many seconds (Envoy's slow start)
HISTORY_LEN = 180  # seconds of sparkline history


class HostState(str, Enum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"
    DISABLED = "disabled"


class HostChangeKind(str, Enum):
    """What changed about a host (HostChange.kind)."""

    ADDED = "added"
    REMOVED = "removed"
    HEALTHY = "healthy"  # the state changed to this one (as HostState)
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"
    DISABLED = "disabled"
    READMITTED = "readmitted"  # a health check brought it back: it may have restarted
    PRIORITY = "priority"
    WEIGHT = "weight"
    SLOTS = "slots"  # its slots (num_parallel), kept in the config
    UNLOADED = "unloaded"  # it no longer has `model` loaded


_STATE_CHANGE = {state: HostChangeKind(state.value) for state in HostState}


@dataclass(frozen=True)
class HostChange:
    """One change of one host, told to the registry's listeners; `model` only for UNLOADED."""

    kind: HostChangeKind
    address: str
    model: Optional[str] = None

    def __str__(self) -> str:
        """As the log says it: "draining", "unloaded:llama3.2:latest"."""
        return f"{self.kind.value}:{self.model}" if self.model is not None else self.kind.value


HostListener = Callable[[HostChange], None]


@lru_cache(maxsize=4096)
def model_key(name: str) -> str:
    """Ollama treats 'llama3.2' and 'llama3.2:latest' as one model. Remembered: several stages of every
    request ask for the key of its model."""
    key = _MODEL_KEYS.get(name)
    if key is None:
        stripped = name.strip()
        key = stripped if ":" in stripped else f"{stripped}:latest"
        if len(_MODEL_KEYS) >= _MODEL_KEYS_MAX:
            _MODEL_KEYS.clear()  # names come from clients: bounded
        _MODEL_KEYS[name] = key
    return key


_MODEL_KEYS: dict[str, str] = {}
_MODEL_KEYS_MAX = 4096


def _monotonic() -> float:
    return time.monotonic()  # looked up at each call (tests pin time.monotonic)


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat()


def _check_priority(priority: int) -> None:
    if priority < 0:
        raise ValueError("priority must be >= 0")


def _check_weight(weight: float) -> None:
    if not 0 < weight < math.inf:  # also refuses NaN: a score is divided by the weight
        raise ValueError("weight must be a number > 0")


@dataclass
class Host:
    """Live state of one Ollama server. Mutated only through HostRegistry (under its lock)."""

    address: str
    label: str = ""
    priority: int = 0
    weight: float = 1.0
    state: HostState = HostState.HEALTHY
    latency_ms: float = 0.0
    # the latency EWMA less each answer's prompt evaluation, where it reported one: what a request costs
    # beyond its prefill, for a score that counts the expected prefill on its own (the cache term), which
    # would otherwise count the cold prompts a host served twice (0: not measured)
    service_ms: float = 0.0
    peak_latency_ms: float = 0.0
    peak_stamp: float = 0.0
    ttft_ms: Optional[float] = None
    tokens_per_s: Optional[float] = None
    success_rate: float = 1.0
    in_flight: int = 0
    requests_total: int = 0
    failures_total: int = 0
    cpu_load: Optional[float] = None
    gpu_free_mem: Optional[float] = None
    models_available: Optional[set[str]] = None  # None: not known yet (every model possible)
    models_loaded: set[str] = field(default_factory=set)
    last_error: Optional[str] = None
    updated_at: float = field(default_factory=time.time)  # wall clock of the last change (shown as ISO-8601)
    latency_samples: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_LEN))
    throughput_samples: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_LEN))
    completed_since_tick: int = 0
    last_failure_at: float = 0.0  # monotonic time of the last failure (0: none)
    readmitted_at: float = 0.0  # monotonic time it came back from unhealthy (0: never left)
    stream_errors_total: int = 0  # error lines inside answers that had begun well

    @property
    def available(self) -> bool:
        return self.state == HostState.HEALTHY

    def has_model(self, model: str) -> Optional[bool]:
        """True/False when the host's model list is known, None when it is not."""
        if self.models_available is None:
            return None
        return model_key(model) in self.models_available

    def effective_success_rate(self, now: float) -> float:
        """The success-rate EWMA with its failures fading since the last one (SUCCESS_DECAY_TAU_S)."""
        if self.success_rate >= 1.0 or self.last_failure_at == 0.0:
            return self.success_rate
        fade = math.exp(-max(0.0, now - self.last_failure_at) / SUCCESS_DECAY_TAU_S)
        return 1.0 - (1.0 - self.success_rate) * fade

    def slow_start_share(self, now: float) -> Optional[float]:
        """0..1 while the host ramps up after coming back (its share of what it would take), else None."""
        if self.readmitted_at == 0.0:
            return None
        elapsed = now - self.readmitted_at
        if elapsed >= SLOW_START_S:
            return None
        return max(0.1, elapsed / SLOW_START_S)

    def current_peak_ms(self, now: float) -> float:
        """Peak-EWMA latency as of `now`: a slow sample counts at once; with time (and fast samples) it
        decays towards the latency EWMA, so a host that was slow once and then idle is tried again."""
        if self.peak_stamp == 0.0:
            return self.peak_latency_ms
        w = math.exp(-max(0.0, now - self.peak_stamp) / PEAK_EWMA_TAU_S)
        return self.peak_latency_ms * w + self.latency_ms * (1 - w)


class HostRegistry:
    """All hosts, by address, with thread-safe mutation and snapshots."""

    def __init__(self, clock: Optional[Callable[[], float]] = None) -> None:
        # what time-fading figures (success rate, peak latency, slow start) are read against
        self.clock: Callable[[], float] = clock if clock is not None else _monotonic
        self._hosts: dict[str, Host] = {}
        self._lock = threading.RLock()
        self._listeners: list[HostListener] = []

    # membership ---------------------------------------------------------------------------------
    def add(self, address: str, *, label: str = "", priority: int = 0, weight: float = 1.0) -> Host:
        _check_priority(priority)
        _check_weight(weight)
        with self._lock:
            if address in self._hosts:
                raise ValueError(f"host {address} is already registered")
            host = Host(address=address, label=label, priority=priority, weight=weight)
            self._hosts[address] = host
        self._emit(HostChange(HostChangeKind.ADDED, address))
        return host

    def remove(self, address: str) -> None:
        with self._lock:
            if address not in self._hosts:
                raise UnknownHost(address)
            del self._hosts[address]
        self._emit(HostChange(HostChangeKind.REMOVED, address))

    def get(self, address: str) -> Host:
        with self._lock:
            try:
                return self._hosts[address]
            except KeyError:
                raise UnknownHost(address) from None

    def __contains__(self, address: str) -> bool:
        with self._lock:
            return address in self._hosts

    def __len__(self) -> int:
        with self._lock:
            return len(self._hosts)

    def addresses(self) -> list[str]:
        with self._lock:
            return list(self._hosts)

    def hosts(self) -> list[Host]:
        """The Host objects themselves (for the router, in the core loop). Do not mutate them."""
        with self._lock:
            return list(self._hosts.values())

    def on_change(self, listener: HostListener) -> None:
        """listener(change) after each change of a host (HostChangeKind says which), in the caller's thread."""
        self._listeners.append(listener)

    def _emit(self, change: HostChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # a listener must never break the request path
                pass

    # operator actions ---------------------------------------------------------------------------
    def _set_state(self, address: str, state: HostState, error: Optional[str] = None) -> bool:
        with self._lock:
            host = self.get(address)
            changed = host.state != state
            host.state = state
            if error is not None:
                host.last_error = error
            host.updated_at = time.time()
        if changed:
            self._emit(HostChange(_STATE_CHANGE[state], address))
        return changed

    def drain(self, address: str) -> None:
        self._set_state(address, HostState.DRAINING)

    def undrain(self, address: str) -> None:
        """Back to healthy; the next failed request or health check will say otherwise."""
        self._set_state(address, HostState.HEALTHY)

    def disable(self, address: str) -> None:
        self._set_state(address, HostState.DISABLED)

    def set_priority(self, address: str, priority: int) -> None:
        _check_priority(priority)
        with self._lock:
            self.get(address).priority = int(priority)
        self._emit(HostChange(HostChangeKind.PRIORITY, address))

    def set_weight(self, address: str, weight: float) -> None:
        _check_weight(weight)
        with self._lock:
            self.get(address).weight = float(weight)
        self._emit(HostChange(HostChangeKind.WEIGHT, address))

    def touch(self, address: str, kind: HostChangeKind = HostChangeKind.SLOTS) -> None:
        """A setting of the host kept elsewhere changed (its slots): tell the listeners."""
        with self._lock:
            self.get(address).updated_at = time.time()
        self._emit(HostChange(kind, address))

    # health -------------------------------------------------------------------------------------
    def mark_unhealthy(self, address: str, error: str) -> None:
        """Taken out of rotation now; draining/disabled hosts keep their state (the operator set it)."""
        with self._lock:
            host = self._hosts.get(address)
            if host is None or host.state in (HostState.DRAINING, HostState.DISABLED):
                if host is not None:
                    host.last_error = error
                return
        self._set_state(address, HostState.UNHEALTHY, error)

    def mark_healthy(self, address: str) -> None:
        """Back in rotation (a health check answered): half of its remembered failures are forgiven, and it
        ramps up from now (slow start)."""
        with self._lock:
            host = self._hosts.get(address)
            if host is None or host.state != HostState.UNHEALTHY:
                return
            host.success_rate = 1.0 - (1.0 - host.success_rate) / 2
            host.readmitted_at = self.clock()
        self._set_state(address, HostState.HEALTHY)
        # it may have restarted: what it had cached may be gone
        self._emit(HostChange(HostChangeKind.READMITTED, address))

    # request accounting (core loop) -------------------------------------------------------------
    def begin(self, address: str) -> None:
        with self._lock:
            host = self._hosts.get(address)
            if host is not None:
                host.in_flight += 1

    def end(self, address: str) -> None:
        with self._lock:
            host = self._hosts.get(address)
            if host is not None:
                host.in_flight = max(0, host.in_flight - 1)

    def record_success(
        self,
        address: str,
        latency_ms: float,
        *,
        ttft_ms: Optional[float] = None,
        tokens: Optional[int] = None,
        eval_s: Optional[float] = None,
        model: Optional[str] = None,
        prefill_ms: Optional[float] = None,
    ) -> None:
        """A served request: `latency_ms` the host's time on it; `prefill_ms` the prompt evaluation its
        answer reported (None: not reported), kept out of the host's service time."""
        now = self.clock()
        with self._lock:
            host = self._hosts.get(address)
            if host is None:
                return
            host.requests_total += 1
            host.completed_since_tick += 1
            host.success_rate = host.effective_success_rate(now) * (1 - SUCCESS_ALPHA) + SUCCESS_ALPHA
            self._add_latency(host, latency_ms, now)
            service = latency_ms if prefill_ms is None else max(0.0, latency_ms - prefill_ms)
            host.service_ms = service if host.service_ms == 0.0 else \
                host.service_ms * (1 - LATENCY_ALPHA) + service * LATENCY_ALPHA
            if ttft_ms is not None:
                host.ttft_ms = ttft_ms if host.ttft_ms is None else host.ttft_ms * (1 - LATENCY_ALPHA) + ttft_ms * LATENCY_ALPHA
            if tokens and eval_s and eval_s > 0:
                tps = tokens / eval_s
                host.tokens_per_s = tps if host.tokens_per_s is None else host.tokens_per_s * 0.7 + tps * 0.3
            if model:
                key = model_key(model)
                host.models_loaded.add(key)  # Ollama keeps a model it just served loaded
                if host.models_available is not None:
                    host.models_available.add(key)
            host.updated_at = time.time()

    @staticmethod
    def _add_latency(host: Host, latency_ms: float, now: float) -> None:
        if host.latency_ms == 0.0:
            host.latency_ms = latency_ms
        else:
            host.latency_ms = host.latency_ms * (1 - LATENCY_ALPHA) + latency_ms * LATENCY_ALPHA
        if latency_ms >= host.peak_latency_ms or host.peak_stamp == 0.0:
            host.peak_latency_ms = latency_ms
        else:
            w = math.exp(-max(0.0, now - host.peak_stamp) / PEAK_EWMA_TAU_S)
            host.peak_latency_ms = host.peak_latency_ms * w + latency_ms * (1 - w)
        host.peak_stamp = now

    def record_failure(self, address: str, error: str, *, latency_ms: Optional[float] = None,
                       eject: bool = True) -> None:
        """A failed upstream call: counts against the success rate and (eject) takes the host out at once.

        eject=False for a failure that says nothing about the host's reachability (an error line inside an
        answer that had begun well): it counts in the stats only."""
        now = self.clock()
        with self._lock:
            host = self._hosts.get(address)
            if host is None:
                return
            host.failures_total += 1
            host.success_rate = host.effective_success_rate(now) * (1 - SUCCESS_ALPHA)
            host.last_failure_at = now
            host.last_error = error
            if not eject:
                host.stream_errors_total += 1
            if latency_ms is not None:
                self._add_latency(host, latency_ms, now)
            host.updated_at = time.time()
        if eject:
            self.mark_unhealthy(address, error)

    def forget_loaded(self, address: str, model: str) -> None:
        """The host unloaded the model (it still has it); told as UNLOADED with the model."""
        key = model_key(model)
        with self._lock:
            host = self._hosts.get(address)
            if host is None or key not in host.models_loaded:
                return
            host.models_loaded.discard(key)
        self._emit(HostChange(HostChangeKind.UNLOADED, address, key))

    def forget_model(self, address: str, model: str) -> None:
        """The host said it does not have the model."""
        with self._lock:
            host = self._hosts.get(address)
            if host is None:
                return
            key = model_key(model)
            host.models_loaded.discard(key)
            if host.models_available is not None:
                host.models_available.discard(key)

    # adaptive metrics ---------------------------------------------------------------------------
    def update_models(self, address: str, available: Iterable[str], loaded: Iterable[str]) -> None:
        """The host's model lists; a model it no longer has loaded is told as UNLOADED with the model."""
        with self._lock:
            host = self._hosts.get(address)
            if host is None:
                return
            now_loaded = {model_key(m) for m in loaded}
            gone = host.models_loaded - now_loaded
            host.models_available = {model_key(m) for m in available}
            host.models_loaded = now_loaded
            host.updated_at = time.time()
        for model in sorted(gone):
            self._emit(HostChange(HostChangeKind.UNLOADED, address, model))

    def update_load(self, address: str, cpu_load: Optional[float], gpu_free_mem: Optional[float]) -> None:
        with self._lock:
            host = self._hosts.get(address)
            if host is None:
                return
            host.cpu_load = cpu_load
            host.gpu_free_mem = gpu_free_mem
            host.updated_at = time.time()

    def tick_history(self) -> None:
        """Called once a second: one sparkline sample per host."""
        with self._lock:
            for host in self._hosts.values():
                host.latency_samples.append(round(host.latency_ms, 2))
                host.throughput_samples.append(float(host.completed_since_tick))
                host.completed_since_tick = 0

    # reading ------------------------------------------------------------------------------------
    def views(self, score_fn: Callable[[Host], tuple[float, dict[str, float]]]) -> list[HostView]:
        now = self.clock()
        with self._lock:
            out = []
            for h in self._hosts.values():
                score, terms = score_fn(h)
                out.append(
                    HostView(
                        host=h.address,
                        label=h.label,
                        state=h.state.value,
                        available=h.available,
                        priority=h.priority,
                        weight=h.weight,
                        latency_ms=round(h.latency_ms, 3),
                        peak_latency_ms=round(h.current_peak_ms(now), 3),
                        ttft_ms=None if h.ttft_ms is None else round(h.ttft_ms, 3),
                        tokens_per_s=None if h.tokens_per_s is None else round(h.tokens_per_s, 2),
                        success_rate=round(h.effective_success_rate(now), 4),
                        in_flight=h.in_flight,
                        requests_total=h.requests_total,
                        failures_total=h.failures_total,
                        cpu_load=h.cpu_load,
                        gpu_free_mem=h.gpu_free_mem,
                        models_available=tuple(sorted(h.models_available or ())),
                        models_loaded=tuple(sorted(h.models_loaded)),
                        score=round(score, 6),
                        score_terms={k: round(v, 6) for k, v in terms.items()},
                        last_error=h.last_error,
                        last_updated=_iso(h.updated_at),
                        latency_history=tuple(h.latency_samples),
                        throughput_history=tuple(h.throughput_samples),
                    )
                )
            return out
