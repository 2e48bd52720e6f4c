"""Books: the one place where what happened to a request is written down.

`apply` turns an attempt's verdict (outcome.Verdict) into its side effects — the registry (latency, success,
failures, in-flight counts, models), the slot table (busy, unfit, and the answer's wait inside the host, which
its slots are learned from), the runner table (the runner the host now has loaded, and whether the answer
was a reload), the lease (which tells the cache shadow what the host's slot holds now) and the metrics — for
live requests and batch chunks alike. `record` writes the one request-log entry and the request metrics of a
client request, however it ended.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Optional

from ..cluster.hosts import HostRegistry, model_key
from ..cluster.slots import SlotTable
from ..observability.metrics import Metrics
from ..observability.requestlog import RequestLog
from ..observability.snapshot import RequestRecord
from .call import Call
from .lease import Lease, Settle
from .outcome import Outcome, Verdict
from .usage import Usage

if TYPE_CHECKING:
    from ..prompt_cache.feedback import Feedback
    from ..prompt_cache.runner import RunnerSent, RunnerTable
    from ..prompt_cache.shadow import CacheShadow

log = logging.getLogger("sollol.request")


class Books:
    def __init__(self, registry: HostRegistry, slots: SlotTable, metrics: Metrics, requests: RequestLog,
                 shadow: Optional["CacheShadow"] = None, runners: Optional["RunnerTable"] = None) -> None:
        self.registry = registry
        self.slots = slots
        self.metrics = metrics
        self.requests = requests
        self.shadow = shadow
        self.runners = runners

    # one upstream call ----------------------------------------------------------------------------
    def opened(self, host: str) -> float:
        """A call to the host begins (it counts in the host's in-flight requests); returns its start time."""
        self.registry.begin(host)
        return time.perf_counter()

    def closed(self, host: str) -> None:
        self.registry.end(host)

    def sent(self, call: Call, host: str) -> Optional["RunnerSent"]:
        """The call goes to the host with its runner options: the host will run it on a runner of those
        (reloading when it must); None when the call names no runner (no model, not inference)."""
        if self.runners is None or call.runner is None or not call.model:
            return None
        return self.runners.sent(host, model_key(call.model), call.runner)

    def apply(self, call: Call, host: str, lease: Optional[Lease], outcome: Outcome, started: float, *,
              usage: Optional[Usage] = None, ttft_s: Optional[float] = None, answer: Optional[str] = None,
              runner: Optional["RunnerSent"] = None) -> None:
        """What the verdict on one attempt means for the host, the model, the slot and the shadow."""
        v = outcome.verdict
        elapsed_ms = (time.perf_counter() - started) * 1000
        model = call.model
        if runner is not None and v is not Verdict.PASS:
            self._runner_not_served(runner, v)
        if v is Verdict.PASS:
            u = usage or Usage()
            reloaded = self._runner_answered(runner, u)
            # the host's latency is its service: the time the request waited inside it for a slot is the
            # queue's (counted through its in-flight requests), and a reload is charged where it would
            # happen (placement's runner term), else a host that once queued requests inside, or reloaded,
            # would look slow until it served again, and would not be sent any to show otherwise
            outside_ms = ((u.wait_s or 0.0) + ((u.load_s or 0.0) if reloaded else 0.0)) * 1000
            self.registry.record_success(host, max(0.0, elapsed_ms - outside_ms),
                                         ttft_ms=None if ttft_s is None else ttft_s * 1000,
                                         tokens=u.eval_count, eval_s=u.eval_s, model=model,
                                         prefill_ms=None if u.prompt_eval_s is None else u.prompt_eval_s * 1000)
            if lease is not None and lease.slot is not None:
                self.slots.answered(lease.slot, u.wait_s, u.load_s, u.work_s)
            _end(lease, Settle.SERVED, answer=answer, feedback=u.feedback(ttft_s, reloaded) if lease is not None and
                 lease.claim is not None else None)
        elif v is Verdict.CLIENT_ERROR:  # about the request itself: passed on, the host is not blamed
            self.registry.record_success(host, elapsed_ms)
            _end(lease, Settle.UNTOUCHED)
        elif v is Verdict.PASSED_ON:  # a pinned call's error answer, handed on as it is
            _end(lease, Settle.UNTOUCHED)
        elif v is Verdict.PREEMPTED:  # it goes back to the queue; the host did nothing wrong
            _end(lease, Settle.FAILED)  # the host may have begun the prompt: what its slot holds is not known
            log.info("batch request on %s gave its slot to a high one", host)
        elif v is Verdict.BUSY:  # busy is not broken: held to what it holds, for a while
            self.slots.mark_busy(host, model)
            _end(lease, Settle.UNTOUCHED)
            log.info("host %s is busy (%s): request back in the queue", host, outcome.reason)
        elif v is Verdict.UNFIT:
            self.slots.mark_unfit(host, model, outcome.reason)
            _end(lease, Settle.FAILED)
            log.warning("host %s cannot load %s: %s", host, model, outcome.reason)
        elif v is Verdict.MODEL_MISSING:  # its model list was stale
            if model:
                self.registry.forget_model(host, model)
                if self.shadow is not None:
                    self.shadow.drop_model(host, model_key(model))
            _end(lease, Settle.FAILED)
        elif v is Verdict.HOST_FAILED or v is Verdict.BROKE_MID_STREAM:
            self.registry.record_failure(host, outcome.reason, latency_ms=elapsed_ms)
            self.metrics.worker_failures.labels(host).inc()
            _end(lease, Settle.FAILED)
            log.warning("host %s failed: %s", host, outcome.reason)
        elif v is Verdict.ERROR_IN_STREAM:  # counted in its stats; it stays in rotation
            self.registry.record_failure(host, f"error inside the answer: {outcome.reason}", eject=False)
            self.metrics.worker_failures.labels(host).inc()
            _end(lease, Settle.FAILED)
        elif v is Verdict.EXECUTOR_FAILED:  # e.g. a Ray actor died: retried, the host is not at fault
            log.warning("executor failed on a call to %s: %s", host, outcome.reason)
            _end(lease, Settle.FAILED)
        else:  # CLIENT_GONE: nobody's fault; the host evaluated the prompt (the answer is not known)
            _end(lease, Settle.SERVED)

    def _runner_answered(self, runner: Optional["RunnerSent"], u: Usage) -> Optional[bool]:
        """The runner the host ran the request on; whether its load_duration shows a reload (None: not known)."""
        if runner is None or self.runners is None:
            return None
        reload = self.runners.answered(runner, u.load_s)
        if reload is not None and reload.counted:
            log.info("host %s reloaded %s (%s): %s, %.2f s", runner.host, runner.model, reload.cause, reload.detail,
                     reload.load_s)
        return None if u.load_s is None else reload is not None

    def _runner_not_served(self, runner: "RunnerSent", v: Verdict) -> None:
        if self.runners is None:
            return
        if v is Verdict.UNFIT:  # it could not load the model: nothing is loaded for it there
            self.runners.forget_model(runner.host, runner.model)
        elif v not in (Verdict.CLIENT_GONE, Verdict.BROKE_MID_STREAM, Verdict.ERROR_IN_STREAM):
            self.runners.failed(runner)  # it never ran: what was loaded before holds

    # one client request ---------------------------------------------------------------------------
    def record(self, call: Call, started: float, status: int, host: str, retries: int,
               tokens: Optional[int] = None, error: Optional[str] = None, lease: Optional[Lease] = None,
               wait_s: float = 0.0) -> None:
        """The request log and the request metrics: one record per client request, however it ended."""
        elapsed = time.perf_counter() - started
        self.metrics.observe(call.endpoint, status, elapsed)
        if call.client:
            self.metrics.child(self.metrics.client_requests, call.client, call.priority).inc()
        self.requests.add(RequestRecord(
            time=time.time(), endpoint=call.endpoint, model=call.model or "", host=host, status=status,
            latency_ms=round(elapsed * 1000, 2), tokens=tokens, retries=retries, error=error,
            placement=_placement(call, lease),
            wait_ms=round((lease.wait_s if lease is not None else wait_s) * 1000, 2),
            priority=call.priority, client=call.client))


def _placement(call: Call, lease: Optional[Lease]) -> str:
    """Why this host; first what the gateway changed in the request, when it did."""
    reason = lease.reason if lease is not None else ""
    if not call.note:
        return reason
    return f"{call.note}; {reason}" if reason else call.note


def _end(lease: Optional[Lease], how: Settle, answer: Optional[str] = None,
         feedback: Optional["Feedback"] = None) -> None:
    if lease is not None:
        lease.end(how, answer=answer, feedback=feedback)
