"""Runner identity: which runner options each host has loaded for each model, what a (re)load costs there,
and the reloads it met.

Ollama loads a model with the runner options of the request that loads it (num_ctx above all, also num_batch,
num_gpu, main_gpu, use_mmap, use_mlock, num_thread: render.document.RUNNER_OPTIONS); a request whose runner
options differ makes it wait for the requests running on the old runner, reload the model (seconds), and
lose every slot's cache. So per (host, model) the table keeps the runner options last sent there (the host
runs every request it takes with that request's options, reloading if it must) and confirmed by an answer,
and placement (request.placement) charges a host whose runner differs from a request's its measured load
time, as a cache miss is charged its prefill.

The reload rule: an answer's `load_duration` is never 0 (0.03-0.15 s on a warm model, its scheduling); a
reload is one far above the host's warm value for that model: above
max(RELOAD_FACTOR × warm, warm + RELOAD_MARGIN_S), warm being the median of its recent warm answers (else of
the model's on the other hosts, else of the host's other models, else DEFAULT_WARM_S). On the small test
model a reload is 0.9 s against 0.03-0.07 s warm, which no fixed threshold of a second sees. Requests that
waited for one load (their windows overlap) count it once. The cause, when known: `options` (SOLLOL last
sent other runner options there), `cold` (no runner known loaded: first use, unloaded, restarted) or
`unknown` (the same options: evicted, expired, or changed by another client).

An answer without a reload although the options sent differ from the confirmed runner's teaches that the two
are one runner to Ollama (the model's default num_ctx named, or not): they do not count as a mismatch then.

Safe from any thread (one lock); every call is O(hosts) at most.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

from ..observability.snapshot import RunnerView
from .render.document import RUNNER_OPTIONS, cjson

#: The runner options a request names: (option, canonical JSON of its value), sorted; () = the model's defaults.
RunnerKey = tuple[tuple[str, str], ...]
DEFAULTS: RunnerKey = ()
RUNNER_OPTION_SET = frozenset(RUNNER_OPTIONS)

RELOAD_FACTOR = 5.0
RELOAD_MARGIN_S = 0.05
DEFAULT_WARM_S = 0.1  # warm load_duration assumed before any is measured (0.03-0.15 s on Ollama 0.5.4, CPU)
DEFAULT_LOAD_S = 1.0  # a (re)load's cost before any is measured anywhere
WARM_SAMPLES = 16
LOAD_ALPHA = 0.3  # weight of a new sample in the load-time EWMA

CAUSES = ("options", "cold", "unknown")


def runner_key(options: Any) -> RunnerKey:
    """The runner part of a request's `options` (None and unknown keys ignored)."""
    if not isinstance(options, Mapping) or not options:
        return DEFAULTS
    if isinstance(options, dict) and options.keys().isdisjoint(RUNNER_OPTION_SET):
        return DEFAULTS  # sampling options only (temperature, num_predict ...): the model's default runner
    out = []
    for name in RUNNER_OPTIONS:
        value = options.get(name)
        if value is not None:
            js = cjson(value)
            if js is not None:
                out.append((name, js))
    return tuple(out)


def describe(key: Optional[RunnerKey]) -> Optional[str]:
    """'num_ctx=4096, num_batch=512'; 'defaults' for a request naming none; None when not known."""
    if key is None:
        return None
    return ", ".join(f"{k}={v}" for k, v in key) if key else "defaults"


def difference(before: RunnerKey, after: RunnerKey) -> str:
    """'num_ctx 2048 → 4096' (an option not named shows as 'default')."""
    a, b = dict(before), dict(after)
    return ", ".join(f"{k} {a.get(k, 'default')} → {b.get(k, 'default')}"
                     for k in RUNNER_OPTIONS if a.get(k) != b.get(k)) or "same options"


@dataclass(eq=False, slots=True)
class RunnerSent:
    """One request sent to a (host, model) with runner options `key`; `before`: what SOLLOL believed loaded."""

    host: str
    model: str
    key: RunnerKey
    before: Optional[RunnerKey]
    before_confirmed: bool
    at: float  # monotonic
    seq: int


@dataclass(frozen=True, slots=True)
class Reload:
    """A reload an answer showed."""

    cause: str  # one of CAUSES
    detail: str  # in words: "num_ctx 2048 → 4096", "no runner known loaded" ...
    load_s: float
    counted: bool  # False: the same load another answer already counted


@dataclass(slots=True)
class _Runner:
    loaded: Optional[RunnerKey] = None
    confirmed: bool = False
    seq: int = 0  # of the last send
    warm: deque[float] = field(default_factory=lambda: deque(maxlen=WARM_SAMPLES))
    warm_median: Optional[float] = None  # of `warm`, kept until it changes (read on every answer)
    load_s: Optional[float] = None
    reloads: dict[str, int] = field(default_factory=dict)
    last_reload: str = ""
    last_cause: str = ""
    window: tuple[float, float] = (0.0, 0.0)  # the last counted load, on the gateway's clock


class RunnerTable:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pairs: dict[tuple[str, str], _Runner] = {}
        self._same: dict[str, set[frozenset[RunnerKey]]] = {}  # per model: options Ollama runs as one runner
        self._seq = 0
        self._lock = threading.Lock()

    # the request's life ------------------------------------------------------------------------------
    def sent(self, host: str, model: str, key: RunnerKey) -> RunnerSent:
        """A request with runner options `key` goes to (host, model): the host will run it with them."""
        with self._lock:
            r = self._pair(host, model)
            self._seq += 1
            out = RunnerSent(host, model, key, r.loaded, r.confirmed, self._clock(), self._seq)
            if r.loaded != key:
                r.loaded, r.confirmed = key, False
            r.seq = self._seq
            return out

    def answered(self, sent: RunnerSent, load_s: Optional[float]) -> Optional[Reload]:
        """The answer to `sent` reported `load_s` (None: no timings): the reload it shows, if any."""
        with self._lock:
            r = self._pair(sent.host, sent.model)
            if r.seq == sent.seq:
                r.loaded, r.confirmed = sent.key, True
            if load_s is None:
                return None
            if load_s <= self._threshold(sent.host, sent.model):
                r.warm.append(load_s)
                r.warm_median = None
                if (sent.before is not None and sent.before != sent.key and sent.before_confirmed
                        and r.seq == sent.seq):
                    self._same.setdefault(sent.model, set()).add(frozenset((sent.before, sent.key)))
                return None
            r.load_s = load_s if r.load_s is None else r.load_s + LOAD_ALPHA * (load_s - r.load_s)
            if sent.before is None:
                cause, detail = "cold", "no runner known loaded"
            elif sent.before != sent.key:
                cause, detail = "options", difference(sent.before, sent.key)
                self._same.get(sent.model, set()).discard(frozenset((sent.before, sent.key)))
            else:
                cause, detail = "unknown", f"same options ({describe(sent.key)})"
            start, end = sent.at, sent.at + load_s
            counted = start >= r.window[1] or end <= r.window[0]
            if counted:
                r.window = (start, end)
                r.reloads[cause] = r.reloads.get(cause, 0) + 1
                r.last_cause = cause
                r.last_reload = f"{cause}: {detail}, {load_s:.2f} s"
            elif r.last_cause == "unknown" and cause != "unknown":
                # one load that several answers waited for: the request that caused it says why
                r.reloads["unknown"] -= 1
                if not r.reloads["unknown"]:
                    del r.reloads["unknown"]
                r.reloads[cause] = r.reloads.get(cause, 0) + 1
                r.last_cause = cause
                r.last_reload = f"{cause}: {detail}, {load_s:.2f} s"
            return Reload(cause, detail, load_s, counted)

    def failed(self, sent: RunnerSent) -> None:
        """The host never ran the request (busy, refused, unreachable): what was loaded before holds."""
        with self._lock:
            r = self._pairs.get((sent.host, sent.model))
            if r is not None and r.seq == sent.seq:
                r.loaded, r.confirmed = sent.before, sent.before_confirmed

    # placement ---------------------------------------------------------------------------------------
    def reload_costs(self, model: str, key: RunnerKey, hosts: Iterable[str]) -> dict[str, float]:
        """Per host whose loaded runner for `model` differs from `key`: the seconds a reload would take
        there. Hosts whose runner matches, or is not known, are left out."""
        out: dict[str, float] = {}
        with self._lock:
            same = self._same.get(model)
            for host in hosts:
                r = self._pairs.get((host, model))
                if r is None or r.loaded is None or r.loaded == key:
                    continue
                if same and frozenset((r.loaded, key)) in same:
                    continue
                out[host] = self._load_s(host, model)
        return out

    def loaded(self, host: str, model: str) -> Optional[RunnerKey]:
        with self._lock:
            r = self._pairs.get((host, model))
            return r.loaded if r is not None else None

    def is_reload(self, host: str, model: str, load_s: float) -> bool:
        with self._lock:
            return load_s > self._threshold(host, model)

    # forgetting --------------------------------------------------------------------------------------
    def forget_host(self, host: str) -> None:
        """The host restarted or left: nothing is known loaded there (its counts and timings stay)."""
        with self._lock:
            for (h, _), r in self._pairs.items():
                if h == host:
                    r.loaded, r.confirmed = None, False

    def forget_model(self, host: str, model: str) -> None:
        """The host unloaded the model."""
        with self._lock:
            r = self._pairs.get((host, model))
            if r is not None:
                r.loaded, r.confirmed = None, False

    def remove_host(self, host: str) -> None:
        with self._lock:
            for key in [k for k in self._pairs if k[0] == host]:
                del self._pairs[key]

    # views -------------------------------------------------------------------------------------------
    def views(self, host: str) -> tuple[RunnerView, ...]:
        with self._lock:
            rows = sorted((m, r) for (h, m), r in self._pairs.items() if h == host)
            return tuple(RunnerView(
                model=m, options=describe(r.loaded), confirmed=r.confirmed,
                warm_load_s=round(statistics.median(r.warm), 3) if r.warm else None,
                load_s=None if r.load_s is None else round(r.load_s, 3), reloads=sum(r.reloads.values()),
                causes=dict(r.reloads), last_reload=r.last_reload) for m, r in rows)

    def reload_counts(self) -> list[tuple[str, str, str, int]]:
        """(host, model, cause, reloads) for every pair that met one (the Prometheus counter)."""
        with self._lock:
            return [(h, m, cause, n) for (h, m), r in sorted(self._pairs.items()) for cause, n in r.reloads.items()]

    # helpers -----------------------------------------------------------------------------------------
    def _pair(self, host: str, model: str) -> _Runner:
        r = self._pairs.get((host, model))
        if r is None:
            r = self._pairs[(host, model)] = _Runner()
        return r

    def _threshold(self, host: str, model: str) -> float:
        warm = self._warm(host, model)
        return max(RELOAD_FACTOR * warm, warm + RELOAD_MARGIN_S)

    def _warm(self, host: str, model: str) -> float:
        r = self._pairs.get((host, model))
        if r is not None and r.warm:
            if r.warm_median is None:
                r.warm_median = statistics.median(r.warm)
            return r.warm_median
        for same_model in (True, False):  # the model elsewhere, then the host's other models
            samples = [x for (h, m), p in self._pairs.items() if (m == model if same_model else h == host)
                       for x in p.warm]
            if samples:
                return statistics.median(samples)
        return DEFAULT_WARM_S

    def _load_s(self, host: str, model: str) -> float:
        r = self._pairs.get((host, model))
        if r is not None and r.load_s is not None:
            return r.load_s
        for same_model in (True, False):
            loads = [p.load_s for (h, m), p in self._pairs.items() if (m == model if same_model else h == host)
                     and p.load_s is not None]
            if loads:
                return sum(loads) / len(loads)
        return DEFAULT_LOAD_S
