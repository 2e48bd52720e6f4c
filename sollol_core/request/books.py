"""Books: the one place a request's end is written down.

The registry (latency, success, tokens/s, models loaded), the cache shadow (the slot now holds this prompt;
what the host reported corrects what the shadow predicted), the slot lease, the metrics and the request log
are all updated here, so each reads one story.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Optional

from ..cluster.hosts import HostRegistry, model_key
from ..observability.metrics import Metrics
from ..observability.requestlog import RequestLog
from ..observability.snapshot import RequestRecord
from ..upstream.executor import ExecutorFailure, UpstreamFailure
from .call import Call
from .relay import Usage

if TYPE_CHECKING:
    from ..prompt_cache.shadow import CacheShadow
    from .admission import Lease

log = logging.getLogger("sollol.proxy")
SERVED, UNTOUCHED, FAILED = "served", "untouched", "failed"


class Books:
    def __init__(self, registry: HostRegistry, metrics: Metrics, requests: RequestLog,
                 shadow: Optional["CacheShadow"] = None) -> None:
        self.registry = registry
        self.metrics = metrics
        self.requests = requests
        self.shadow = shadow

    def record(self, call: Call, started: float, status: int, host: str, retries: int,
               tokens: Optional[int] = None, error: Optional[str] = None, lease: Optional["Lease"] = None,
               wait_s: float = 0.0) -> None:
        """The request log and the request metrics: one record per client request, however it ended."""
        elapsed = time.perf_counter() - started
        self.metrics.observe(call.endpoint, status, elapsed)
        if call.client:
            self.metrics.child(self.metrics.client_requests, call.client, call.priority).inc()
        self.requests.add(RequestRecord(
            time=time.time(), endpoint=call.endpoint, model=call.model or "", host=host, status=status,
            latency_ms=round(elapsed * 1000, 2), tokens=tokens, retries=retries, error=error,
            placement=lease.reason if lease is not None else "",
            wait_ms=round((lease.wait_s if lease is not None else wait_s) * 1000, 2),
            priority=call.priority, client=call.client))

    def host_failed(self, host: str, error: "str | UpstreamFailure", attempt_started: float) -> None:
        """The host did not answer, broke off, or answered a 5xx that is its own fault: taken out."""
        if isinstance(error, ExecutorFailure):  # e.g. a Ray actor died: retry, but the host is not at fault
            log.warning("executor failed on a call to %s: %s", host, error)
            return
        text = str(error)
        self.registry.record_failure(host, text, latency_ms=(time.perf_counter() - attempt_started) * 1000)
        self.metrics.worker_failures.labels(host).inc()
        log.warning("host %s failed: %s", host, text)

    def stream_error(self, host: str, error: str) -> None:
        """An error line inside a 200 stream: the host's failure in its stats; it stays in rotation."""
        self.registry.record_failure(host, f"error inside the answer: {error}", eject=False)
        self.metrics.worker_failures.labels(host).inc()

    def served(self, call: Call, host: str, lease: Optional["Lease"], elapsed_ms: float, usage: Usage,
               ttft_s: Optional[float] = None, ok: bool = True, answer: Optional[str] = None) -> None:
        """An answer that came back: the host's stats, and what its prompt cache now holds."""
        self.registry.record_success(host, elapsed_ms, ttft_ms=None if ttft_s is None else ttft_s * 1000,
                                     tokens=usage.eval_count, eval_s=usage.eval_s,
                                     model=call.model if ok else None)
        self.settle(lease, SERVED if ok else UNTOUCHED, usage=usage, ttft_s=ttft_s, answer=answer)

    def settle(self, lease: Optional["Lease"], how: str, *, usage: Optional[Usage] = None,
               ttft_s: Optional[float] = None, answer: Optional[str] = None) -> None:
        """The slot goes back; the shadow learns what the host's slot holds now:

        SERVED     the host ran the prompt: the slot holds it (and the answer corrects the prediction)
        UNTOUCHED  the host did not run it (busy, a 4xx): the slot holds what it held
        FAILED     broken off or unknown: what the slot holds is not known any more
        """
        if lease is None:
            return
        if lease.placed is not None and self.shadow is not None:
            if how == SERVED:
                from ..prompt_cache.canonical import extend_with_answer
                from ..prompt_cache.feedback import Feedback

                held = extend_with_answer(lease.prompt, answer) if answer and lease.prompt is not None else None
                self.shadow.complete(lease.placed, answer=held)
                if usage is not None:
                    feedback = Feedback(prompt_eval_count=usage.prompt_eval_count,
                                        prompt_eval_duration_s=usage.prompt_eval_s,
                                        load_duration_s=usage.load_s, ttft_s=ttft_s)
                    self.shadow.observe(lease.placed, feedback)
            else:
                self.shadow.release(lease.placed, failed=how == FAILED)
            lease.placed = None  # told once
        lease.release(ok=how != FAILED)

    def model_missing(self, host: str, model: str) -> None:
        self.registry.forget_model(host, model)
        if self.shadow is not None:
            self.shadow.drop_model(host, model_key(model))
