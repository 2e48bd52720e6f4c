"""The batch endpoints.

    POST /api/embed/batch    {"docs": [...], "model": "...", "ids": [...]} -> {"job_id", "queued"} once stored
    GET  /api/batch/{job_id} status, totals and results [{"id", "embedding"}], paged (offset, limit);
                             ?format=jsonl streams every result, one JSON object a line
    GET  /api/batch-status   queued / in_progress / done / failed, docs/s, Dask's state, the jobs
    POST /api/batch/trigger  start a batch now (an operator endpoint)

With api_keys set, a job belongs to the key that submitted it (its name): another key gets 404 for it,
and /api/batch-status shows a client its own jobs only; the operator token sees them all. A key may have at
most its `max_queued_docs` (else batch_max_queued_docs_per_key) documents waiting or in progress (429
above).

The queue itself is reached through ports.BatchJobs: http and batch do not import each other's modules.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable, Optional

import orjson
from fastapi import Request
from starlette.responses import Response, StreamingResponse

from ...cluster.adaptive import ModelListRefresher
from ...cluster.routing import Router
from ...config import SollolConfig
from ...errors import BadRequest, BatchQuotaExceeded, BatchUnavailable, NoHostForModel
from .. import openapi as am
from ..access import CLIENT, OPERATOR, GatewayRouter, caller_of
from ..io import json_response, read_json
from ..ports import BatchJobs
from ..roles import Caller

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
STREAM_PAGE = 500


def batch_routes(config: SollolConfig, jobs: BatchJobs, router: Router, model_lists: ModelListRefresher,
                 trigger_batch: Callable[[], dict[str, Any]]) -> GatewayRouter:
    """`trigger_batch`: the operator action behind POST /api/batch/trigger (ports.OperatorActions)."""
    routes = GatewayRouter()

    async def model_exists(model: str) -> bool:
        """False only when every host's model list is known, re-read, and none has the model."""
        try:
            router.candidates(model)
            return True
        except NoHostForModel:
            pass
        await model_lists.refresh()
        try:
            router.candidates(model)
            return True
        except NoHostForModel:
            return False

    def parse(data: dict[str, Any]) -> tuple[str, list[str], Optional[list[str]]]:
        model = data.get("model")
        if not isinstance(model, str) or not model.strip():
            raise BadRequest(400, "model is required (the embedding model, e.g. \"nomic-embed-text\")")
        docs = data.get("docs")
        if docs is None:
            raise BadRequest(400, "docs is required: a list of strings")
        if not isinstance(docs, list):
            raise BadRequest(400, "docs must be a list of strings")
        if not docs:
            raise BadRequest(400, "docs is empty: send at least one document")
        if len(docs) > config.batch_max_docs_per_request:
            raise BadRequest(413, f"{len(docs)} documents is over the limit of {config.batch_max_docs_per_request} "
                                  f"per request (batch_max_docs_per_request): send them in several requests")
        limit = config.batch_max_doc_chars
        for i, doc in enumerate(docs):
            if not isinstance(doc, str):
                raise BadRequest(400, f"docs[{i}] must be a string, not {type(doc).__name__}")
            if not doc.strip():
                raise BadRequest(400, f"docs[{i}] is empty")
            if len(doc) > limit:
                raise BadRequest(413, f"docs[{i}] has {len(doc)} characters, over the limit of {limit} "
                                      f"(batch_max_doc_chars): split it")
        ids = data.get("ids")
        if ids is None:
            return model, docs, None
        if not isinstance(ids, list) or len(ids) != len(docs):
            raise BadRequest(400, f"ids must be a list with one id per document ({len(docs)})")
        out: list[str] = []
        seen: set[str] = set()
        for i, value in enumerate(ids):
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise BadRequest(400, f"ids[{i}] must be a string")
            text = str(value)
            if not text:
                raise BadRequest(400, f"ids[{i}] is empty")
            if text in seen:
                raise BadRequest(400, f"ids must be unique: {text!r} appears twice")
            seen.add(text)
            out.append(text)
        return model, docs, out

    def quota_of(caller: Caller) -> Optional[int]:
        """The documents the caller's key may have waiting or in progress; None: no quota (no keys)."""
        if caller.owner is None:
            return None
        for entry in config.api_keys.values():
            if entry.name == caller.owner and entry.max_queued_docs is not None:
                return entry.max_queued_docs
        return config.batch_max_queued_docs_per_key

    @routes.declare(CLIENT, "POST", "/api/embed/batch", summary="queue documents to embed in the background",
                    openapi_extra=am.doc(am.EmbedBatchRequest, am.BatchQueued, errors=(400, 404, 413, 429, 503)))
    async def submit(request: Request) -> Response:
        caller = caller_of(request)
        data = await read_json(request, config.max_body_bytes)
        model, docs, ids = parse(data)
        if not await model_exists(model):
            raise BadRequest(404, f"model '{model}' not found on any host")
        try:
            job = await jobs.enqueue(model, docs, ids, owner=caller.owner, max_queued=quota_of(caller))
        except BatchQuotaExceeded as e:
            raise BadRequest(429, f"batch quota: {e} (max_queued_docs of the key, or "
                                  f"batch_max_queued_docs_per_key)", {"Retry-After": "60"}) from None
        except BatchUnavailable as e:
            raise BadRequest(503, f"batch queue unavailable: {e}") from None
        return json_response({"job_id": job.job_id, "queued": job.total})

    @routes.declare(CLIENT, "GET", "/api/batch-status", summary="the batch queue: totals, rate, Dask, jobs",
                    openapi_extra=am.doc(answer=am.BatchStatus, errors=()))
    async def batch_status(request: Request) -> Response:
        return json_response(jobs.status(caller_of(request).owner))

    @routes.declare(OPERATOR, "POST", "/api/batch/trigger", summary="operator: start a batch now",
                    openapi_extra=am.doc(answer=am.BatchTriggered, errors=(401, 403)))
    async def trigger() -> Response:
        return json_response(trigger_batch())

    def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(400, f"{name} must be an integer") from None
        if not low <= value <= high:
            raise BadRequest(400, f"{name} must be between {low} and {high}")
        return value

    @routes.declare(CLIENT, "GET", "/api/batch/{job_id}",
                    summary="a batch job: status, totals, results (paged, or ?format=jsonl)",
                    openapi_extra=am.doc(answer=am.BatchJob, stream="application/x-ndjson", errors=(400, 404),
                                         query={"offset": ("integer", "First result to answer (default 0)."),
                                                "limit": ("integer", "Results per page, 1..1000 (default 100)."),
                                                "format": ("string", "json (default) or jsonl: every result, "
                                                                     "one object a line.")}))
    async def job(job_id: str, request: Request) -> Response:
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "jsonl"):
            raise BadRequest(400, "format must be json or jsonl")
        offset = int_param(request, "offset", 0, 0, 2**62)
        limit = int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        info = jobs.job(job_id, caller_of(request).owner)
        if info is None:  # another key's job reads the same as no job at all
            raise BadRequest(404, f"no such batch job: {job_id[:80]}")
        if fmt == "jsonl":
            return StreamingResponse(stream_results(job_id), media_type="application/x-ndjson")
        rows = await jobs.results_page(job_id, offset, limit)
        errors = await jobs.errors(job_id, limit) if info["failed"] else []
        body: dict[str, Any] = dict(info)
        body["offset"] = offset
        body["limit"] = limit
        body["next_offset"] = offset + len(rows) if offset + len(rows) < info["done"] else None
        body["results"] = [{"id": doc_id, "embedding": orjson.Fragment(emb)} for _, doc_id, emb in rows]
        body["errors"] = [{"id": doc_id, "error": err} for doc_id, err in errors]
        return json_response(body)

    async def stream_results(job_id: str) -> AsyncIterator[bytes]:
        after = -1
        while True:
            rows = await jobs.results_after(job_id, after, STREAM_PAGE)
            if not rows:
                return
            yield b"".join(orjson.dumps({"id": doc_id, "embedding": orjson.Fragment(emb)}) + b"\n"
                           for _, doc_id, emb in rows)
            after = rows[-1][0]
            if len(rows) < STREAM_PAGE:
                return

    return routes
