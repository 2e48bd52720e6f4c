"""What the routes call: small Protocols, satisfied structurally by the objects the service builds.

    Forwarder        the request path (forward a Call, or answer bad input in the API's shape)
    OperatorActions  hosts, routing and the batch trigger, as the dashboard does them
    StatsSource      /api/health and /api/stats
    BatchJobs        the batch queue, through typed methods
    Upstream         an executor that also reads a host's small JSON answers (listings, version)

The routes never see the service object: a route can only do what its port offers, and http imports
nothing of the layers above it nor of batch (the two are independent).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Protocol, Sequence

from ..config import RoutingWeights
from ..request.answer import Answer, Whole
from ..request.call import Call
from ..upstream.executor import Executor

# (position in its job, document id, embedding as JSON text): a stored result, passed on without parsing
ResultRow = tuple[int, str, str | bytes]


class Forwarder(Protocol):
    """The request path: admission, placement, the upstream attempt, relay and books."""

    active: int

    async def forward(self, call: Call, pinned: Optional[str] = None) -> Answer:
        """The answer to `call`, from the host placement picks, or from `pinned` alone when given."""
        ...

    def reject(self, endpoint: str, status: int, message: str, api: Optional[str] = None,
               headers: Optional[Mapping[str, str]] = None) -> Whole:
        """Bad input answered by the gateway itself, booked like any request, in the API's error shape."""
        ...


class OperatorActions(Protocol):
    """What an operator may change (the operator routes and the dashboard call the same actions)."""

    def add_host(self, address: str, *, priority: int = 0, weight: float = 1.0, label: str = "") -> str: ...

    def remove_host(self, address: str) -> None: ...

    def drain_host(self, address: str) -> None: ...

    def undrain_host(self, address: str) -> None: ...

    def set_priority(self, address: str, priority: int) -> None: ...

    def set_weight(self, address: str, weight: float) -> None: ...

    def set_strategy(self, name: str) -> None: ...

    def set_weights(self, **weights: float) -> RoutingWeights: ...

    def trigger_batch(self) -> dict[str, Any]: ...


class StatsSource(Protocol):
    """The cluster as /api/health and /api/stats answer it."""

    def get_health(self) -> dict[str, Any]: ...

    def get_stats(self) -> dict[str, Any]: ...


class QueuedJob(Protocol):
    """A batch job once it is stored."""

    @property
    def job_id(self) -> str: ...

    @property
    def total(self) -> int: ...


class BatchJobs(Protocol):
    """The batch queue. The async methods read the database in its own thread; the others read counters
    kept in memory. Each may raise BatchUnavailable while the queue cannot be used. `owner` (an API key's
    name) files a job under its client and limits what the reads show to that client's jobs; None: no
    such limit (no keys, or the operator)."""

    async def enqueue(self, model: str, docs: Sequence[str], ids: Optional[Sequence[str]], *,
                      owner: Optional[str] = None, max_queued: Optional[int] = None) -> QueuedJob:
        """Store a job; returns once it is committed. BatchQuotaExceeded when the owner's documents waiting
        or in progress would go over `max_queued`."""
        ...

    def status(self, owner: Optional[str] = None) -> dict[str, Any]: ...

    def job(self, job_id: str, owner: Optional[str] = None) -> Optional[dict[str, Any]]:
        """The job's counters, None when there is no such job or it is not the owner's."""
        ...

    async def results_page(self, job_id: str, offset: int, limit: int) -> Sequence[ResultRow]:
        """Up to `limit` finished results from the `offset`-th, in document order."""
        ...

    async def errors(self, job_id: str, limit: int) -> Sequence[tuple[str, str]]:
        """(document id, error) of up to `limit` failed documents."""
        ...

    async def results_after(self, job_id: str, after: int, limit: int) -> Sequence[ResultRow]:
        """Up to `limit` finished results whose position is after `after` (-1: from the first)."""
        ...


class Upstream(Executor, Protocol):
    """An executor as the listing routes use it: besides `open`, a small GET whose JSON answer it parses
    (raises UpstreamFailure for a status other than 200 or an answer that is not JSON)."""

    async def get_json(self, host: str, path: str, timeout: float) -> object: ...
