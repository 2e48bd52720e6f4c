"""SOLLOL's own endpoints: health, stats, hosts, routing and batches."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, Field

from .base import OpenBody

__all__ = ["HealthResponse", "StatsResponse", "AddHost", "HostChange", "HostAnswer", "RoutingChange", "RoutingAnswer", "EmbedBatchRequest", "BatchQueued", "BatchJob", "BatchStatus", "BatchTriggered"]


class HealthResponse(OpenBody):
    """Everyone gets the status; the operator also the hosts (their addresses are not everyone's to see)."""

    status: Literal["ok", "degraded", "down"]
    hosts_total: Optional[int] = None
    hosts_available: Optional[int] = None
    hosts: Optional[dict[str, dict[str, Any]]] = None
    timestamp: Optional[str] = None


class StatsResponse(OpenBody):
    hosts: list[dict[str, Any]]
    routing: dict[str, Any]
    gateway: dict[str, Any]
    executor: dict[str, Any]
    components: dict[str, Any]
    timestamp: str


class AddHost(BaseModel):
    host: str = Field(..., description="host:port", examples=["10.0.0.2:11434"])
    priority: int = Field(0, ge=0)
    weight: float = Field(1.0, gt=0)


class HostChange(BaseModel):
    priority: Optional[int] = Field(None, ge=0)
    weight: Optional[float] = Field(None, gt=0)


class HostAnswer(OpenBody):
    status: Optional[str] = None
    host: str
    priority: Optional[int] = None
    weight: Optional[float] = None


class RoutingChange(BaseModel):
    strategy: Optional[Literal["performance", "p2c", "round_robin", "priority"]] = None
    weights: Optional[dict[str, float]] = Field(None, examples=[{"latency": 0.5}])


class RoutingAnswer(BaseModel):
    strategy: str
    weights: dict[str, float]


class EmbedBatchRequest(BaseModel):
    docs: list[str] = Field(..., min_length=1)
    model: str = Field(..., min_length=1, examples=["nomic-embed-text"])
    ids: Optional[list[str]] = Field(None, description="One unique id per document.")


class BatchQueued(BaseModel):
    job_id: str
    queued: int


class BatchJob(OpenBody):
    job_id: Optional[str] = None
    status: Optional[str] = Field(None, description="queued, in_progress, done or failed")
    results: Optional[list[dict[str, Any]]] = Field(None, description='[{"id", "embedding"}] in document order')
    errors: Optional[list[dict[str, Any]]] = None
    offset: Optional[int] = None
    limit: Optional[int] = None
    next_offset: Optional[int] = None


class BatchStatus(OpenBody):
    queued: Optional[int] = None
    in_progress: Optional[int] = None
    done: Optional[int] = None
    failed: Optional[int] = None
    dask: Optional[dict[str, Any]] = None
    jobs: Optional[list[dict[str, Any]]] = None


class BatchTriggered(OpenBody):
    triggered: bool
    queued: int
    reason: Optional[str] = None
