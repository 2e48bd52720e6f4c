"""Plain data the core hands to its readers (dashboard, /api/stats, examples).

Everything here is an immutable copy made under the registry lock, so a reader in another thread
(the Textual app polls ``SOLLOL.snapshot()``) never sees a half-updated host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class HostView:
    """One host as the router sees it right now."""

    host: str  # "address:port"
    label: str  # "" for a real host, e.g. "simulated fast" for a --demo node
    state: str  # healthy / unhealthy / draining / disabled
    available: bool  # takes new requests (healthy and not draining/disabled)
    priority: int  # rank, 0 is preferred first
    weight: float  # capacity multiplier; a score is divided by it
    latency_ms: float  # EWMA of request latency (0.0 until the first sample)
    peak_latency_ms: float  # peak-EWMA latency used by p2c
    ttft_ms: Optional[float]  # EWMA time to first streamed chunk, None until a stream was seen
    tokens_per_s: Optional[float]  # EWMA generation speed, None until known
    success_rate: float  # EWMA of successes, 1.0 at start
    in_flight: int
    requests_total: int
    failures_total: int
    cpu_load: Optional[float]  # 0..1, None when unknown (remote host)
    gpu_free_mem: Optional[float]  # MiB, None when unknown (remote host or no GPU)
    models_available: tuple[str, ...]
    models_loaded: tuple[str, ...]
    score: float  # lower is better, by the performance formula with the live weights
    score_terms: dict[str, float]  # term name -> weighted contribution (sums to score*weight)
    last_error: Optional[str]
    last_updated: str  # ISO-8601, last time any stat changed
    latency_history: tuple[float, ...]  # one sample a second, oldest first (for sparklines)
    throughput_history: tuple[float, ...]  # completed requests per second, one sample a second
    # slots (gateway queue): requests admitted to the host now, and its slots per model (None: unlimited)
    slots: Optional[int] = None
    slots_in_use: int = 0
    slots_by_model: tuple[tuple[str, int, Optional[int]], ...] = ()  # (model, in use, limit)
    unfit_models: tuple[str, ...] = ()  # models that failed to load here lately (tried elsewhere)
    # prompt cache (what the shadow says the host's slots hold)
    cache: Optional["CacheView"] = None
    # learned slots (cluster.slot_learning): `slots` above is learned when slots_learned; the evidence per model
    slots_learned: bool = False
    slot_learning: tuple["SlotLearningView", ...] = ()
    # runner identity (prompt_cache.runner): the runner options loaded per model, and the reloads met
    runners: tuple["RunnerView", ...] = ()


@dataclass(frozen=True)
class SlotLearningView:
    """What one (host, model)'s answers taught about its slots (see cluster.slot_learning)."""

    model: str
    slots: Optional[int]  # learned; None: no evidence yet (default_num_parallel, or unlimited, holds)
    applies: bool  # the host learns (no num_parallel of its own, learn_slots on); else the evidence is only shown
    waited: int  # answers that waited for a slot inside the host
    ran_beside: int  # answers that ran beside other requests of SOLLOL's without waiting
    most_beside: int  # the most requests seen running at once without a wait
    probes: int  # requests let through one above the learned slots
    probes_failed: int  # of those, the ones that waited
    last: str  # the last change, in words ("1 → 2: ran beside 1 other(s) without waiting")
    learning_s: Optional[float] = None  # seconds from the first evidence to the last change
    changed_ago_s: Optional[float] = None
    next_probe_in_s: Optional[float] = None  # after a failed probe: seconds until the next one may go


@dataclass(frozen=True)
class RunnerView:
    """The runner one (host, model) has loaded, as far as SOLLOL knows, and the reloads it met."""

    model: str
    options: Optional[str]  # "num_ctx=4096", "defaults" (none named), None: not known
    confirmed: bool  # an answer showed it loaded (else only sent)
    warm_load_s: Optional[float]  # the host's warm load_duration for the model (median of recent answers)
    load_s: Optional[float]  # measured (re)load time; None: none seen
    reloads: int
    causes: dict[str, int] = field(default_factory=dict)  # cause -> reloads ("options", "cold", "unknown")
    last_reload: str = ""  # the last one, in words


@dataclass(frozen=True)
class CacheView:
    """What SOLLOL's shadow of one host's prompt cache says, and how well placing by it went."""

    hit_rate: Optional[float]  # share of placed requests that found part of their prompt cached; None: none yet
    prefill_saved_s: float  # prefill seconds the host skipped thanks to its cache (estimated from its rate)
    entries: int  # slots (all models) holding a prompt in the shadow
    blocks: int  # hashed blocks kept for the host
    bytes: int  # memory the shadow uses for the host
    prefill_s_per_kchar: Optional[float]  # measured prefill rate; None: not measured yet
    predicted_hits: int = 0  # placements the shadow expected to reuse the cache
    confirmed_hits: int = 0  # of those, the host's answer confirmed the reuse
    corrections: int = 0  # times the host's answer corrected the shadow


@dataclass(frozen=True)
class RequestRecord:
    """One finished request through the gateway (the request log)."""

    time: float  # unix time when it finished
    endpoint: str  # e.g. "/api/chat"
    model: str  # "" when the request names none
    host: str  # host that served it, "" when none could
    status: int  # HTTP status sent to the client
    latency_ms: float
    tokens: Optional[int]  # eval_count when the upstream reported it
    retries: int
    error: Optional[str]
    placement: str = ""  # why this host, in numbers, e.g. "cached 93% (8.1k of 8.7k chars), est. 0.05 s"
    wait_ms: float = 0.0  # time spent in the gateway queue
    priority: str = "interactive"  # class: high / interactive / batch
    client: str = ""  # API key name or client address


@dataclass(frozen=True)
class ComponentState:
    """State of a background component (Ray, Dask, executor)."""

    name: str
    state: str  # "off" / "starting" / "ready" / "failed"
    detail: str = ""  # e.g. the failure reason or the address


@dataclass(frozen=True)
class BatchJobView:
    job_id: str
    total: int
    done: int
    failed: int
    status: str  # queued / in_progress / done / failed
    docs_per_s: float


@dataclass(frozen=True)
class BatchView:
    queued: int = 0
    in_progress: int = 0
    done: int = 0
    failed: int = 0
    docs_per_s: float = 0.0
    jobs: tuple[BatchJobView, ...] = ()
    available: bool = False  # False until a batch queue exists


@dataclass(frozen=True)
class QueueView:
    """The gateway queue right now, and what it did since start."""

    depth: dict[str, int] = field(default_factory=dict)  # class -> requests waiting
    oldest_wait_s: dict[str, float] = field(default_factory=dict)  # class -> seconds the oldest has waited
    admitted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count (queue_full, timeout, shed, rate_limited ...)
    expired: int = 0  # left the queue past their class's timeout
    cancelled: int = 0  # their client went away while they waited
    preempted: int = 0  # batch requests that gave their slot to a waiting high one (queue.preempt_batch)
    why: dict[str, str] = field(default_factory=dict)  # class -> why its oldest request waits
    reserved_for: tuple[str, ...] = ()  # models whose interactive reserve holds now (batch leaves it free)


@dataclass(frozen=True)
class ClientView:
    name: str
    priority: str
    requests: int
    waiting: int
    in_flight: int
    rejected: int


@dataclass(frozen=True)
class ClusterSnapshot:
    gateway_url: str
    strategy: str
    weights: dict[str, float]
    uptime_s: float
    requests_per_s: float
    errors_per_s: float
    active_requests: int
    hosts: tuple[HostView, ...]
    recent_requests: tuple[RequestRecord, ...]  # newest last
    components: tuple[ComponentState, ...] = ()
    batch: BatchView = field(default_factory=BatchView)
    demo: bool = False
    queue: QueueView = field(default_factory=QueueView)
    clients: tuple[ClientView, ...] = ()
    sim_clients: Optional[str] = None  # demo traffic: None when there is none, else "on: ..." / "off"
