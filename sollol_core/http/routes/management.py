"""Model management across the hosts: pull, push, create, copy, delete, and blob uploads for create.

Which hosts act, without `X-SOLLOL-Host`:

    pull, create      every host that can act now (not disabled, not unhealthy: those are listed as skipped);
                      create only on the hosts that have its base model when it names one (`from`, or a
                      Modelfile's FROM) and some host has it
    copy, delete      every such host: a host that answers 404 did not have the model ("absent"); the call
                      is a 404 only when no host had it
    push              one host that has the model (pushing the same model twice is wasted work)
    HEAD /api/blobs   200 only when every such host has the blob
    POST /api/blobs   the upload goes, as it is read, to every such host that lacks the blob, all at once;
                      it is never held in memory (a model's weights are gigabytes)

A streamed pull or create (the default, as in Ollama) answers one merged progress stream (fanout.ProgressMerger)
that the `ollama` command shows as it shows one server's; otherwise one JSON answer. Either way `hosts` tells
per host what happened. `X-SOLLOL-Host: host:port` narrows any of them to that host (its answer passed on as
it is); `X-SOLLOL-Host: all` means every host that is not disabled.

Model management is an operator route, opened to clients by management_open (the guard: guard.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, AsyncIterator, Optional

import orjson
from fastapi import Request
from starlette.responses import Response

from ...cluster.adaptive import ModelListRefresher
from ...cluster.hosts import HostRegistry, HostState
from ...cluster.routing import Router
from ...config import SollolConfig, normalize_host
from ...errors import BadRequest, BodySourceError, NoHostForModel, UpstreamFailure
from ...observability.metrics import Metrics
from ...observability.requestlog import RequestLog
from ...observability.snapshot import RequestRecord
from ...request.answer import Streamed
from ...request.call import Call
from ...upstream.executor import Executor, StreamBody, UpstreamResponse
from ...upstream.fanout import BodyTee, ProgressMerger
from .. import openapi as am
from ..access import OPERATOR, GatewayRouter
from ..answers import to_asgi
from ..inference import stream_flag
from ..io import json_response, model_of, read_json
from ..ports import Forwarder

log = logging.getLogger("sollol.management")

PROGRESS_OPS = ("pull", "push", "create")
DIGEST = re.compile(r"sha256[:-][0-9a-fA-F]{64}")  # Ollama's rule (server/modelpath.go), matched in full
HEAD_TIMEOUT_S = 15.0
_NDJSON = "application/x-ndjson"


def _message(result: Any) -> str:
    if isinstance(result, dict):
        error = result.get("error")
        if isinstance(error, str):
            return error
        if "raw" in result:
            return str(result["raw"])[:200]
    return "failed"


def _parse(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"raw": body.decode(errors="replace")}


def _overall_failure(statuses: list[int]) -> int:
    """One status for several hosts' failures: theirs when they agree on a 4xx, else 502."""
    return statuses[0] if len(set(statuses)) == 1 and 400 <= statuses[0] < 500 else 502


def base_model(data: dict[str, Any]) -> Optional[str]:
    """The model a create builds on (`from`, or a Modelfile's FROM), when it names a model, not a file."""
    base = data.get("from")
    if not (isinstance(base, str) and base.strip()):
        base = None
        modelfile = data.get("modelfile")
        if isinstance(modelfile, str):
            for line in modelfile.splitlines():
                keyword, _, arg = line.strip().partition(" ")
                if keyword.upper() == "FROM":
                    base = arg.strip()
                    break
    if not base or base.startswith(("@", "/", ".", "~", "sha256")) or base.lower().endswith((".gguf", ".bin")):
        return None
    return base


class Management:
    """The operations across the hosts. `executor` is the in-loop one: blob bodies are read in this
    process, and Ray is for inference."""

    def __init__(self, *, config: SollolConfig, registry: HostRegistry, router: Router,
                 model_lists: ModelListRefresher, forwarder: Forwarder, executor: Executor, metrics: Metrics,
                 requests: RequestLog) -> None:
        self.cfg = config
        self.registry = registry
        self.router = router
        self.model_lists = model_lists
        self.forwarder = forwarder
        self.executor = executor
        self.metrics = metrics
        self.requests = requests

    # which hosts -----------------------------------------------------------------------------------
    def named_host(self, request: Request) -> tuple[Optional[list[str]], bool]:
        """(hosts named by X-SOLLOL-Host or None, whether it named exactly one by address)."""
        raw = request.headers.get("x-sollol-host")
        if raw is None or not raw.strip():
            return None, False
        raw = raw.strip()
        if raw.lower() == "all":
            return [h.address for h in self.registry.hosts() if h.state != HostState.DISABLED], False
        try:
            address = normalize_host(raw)
        except ValueError as e:
            raise BadRequest(400, f"X-SOLLOL-Host: {e}") from None
        if address not in self.registry:
            raise BadRequest(404, f"X-SOLLOL-Host: no such host {address}; see /api/stats")
        return [address], True

    def acting_hosts(self) -> tuple[list[str], dict[str, str]]:
        """Hosts that can act now, and those skipped with why (unhealthy)."""
        hosts: list[str] = []
        skipped: dict[str, str] = {}
        for h in self.registry.hosts():
            if h.state == HostState.DISABLED:
                continue
            if h.state == HostState.UNHEALTHY:
                skipped[h.address] = f"unhealthy ({h.last_error or 'no answer'})"
            else:
                hosts.append(h.address)
        return hosts, skipped

    def targets(self, request: Request) -> tuple[list[str], dict[str, str], bool]:
        named, one = self.named_host(request)
        if named is not None:
            return named, {}, one
        hosts, skipped = self.acting_hosts()
        return hosts, skipped, False

    async def push_host(self, model: str) -> str:
        for attempt in (0, 1):
            try:
                order = self.router.route(model)
            except NoHostForModel:
                order = None
            if order:
                return order[0].address
            if attempt == 0:
                await self.model_lists.refresh()
        if order is None:
            raise BadRequest(404, f"model '{model}' not found on any host")
        raise BadRequest(503, f"no available host has model '{model}' now; see /api/stats")

    async def refresh(self, hosts: list[str]) -> None:
        """Re-read the model lists of the hosts that acted, so routing sees the change at once."""
        await self.model_lists.refresh_hosts(hosts)

    # books ------------------------------------------------------------------------------------------
    def book(self, endpoint: str, status: int, started: float, hosts: list[str], model: str = "",
             error: Optional[str] = None) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.observe(endpoint, status, elapsed)
        self.requests.add(RequestRecord(time=time.time(), endpoint=endpoint, model=model, host=",".join(hosts),
                                        status=status, latency_ms=round(elapsed * 1000, 2), tokens=None,
                                        retries=0, error=error))

    # pull, push, create, copy, delete ---------------------------------------------------------------
    async def json_op(self, op: str, method: str, request: Request) -> Response:
        data = await read_json(request, self.cfg.max_body_bytes)
        if op == "copy":
            source, dest = data.get("source"), data.get("destination")
            if not (isinstance(source, str) and source.strip() and isinstance(dest, str) and dest.strip()):
                raise BadRequest(400, "source and destination are required (model names)")
            model = source
        else:
            model = model_of(data)
        stream = stream_flag(data, True) if op in PROGRESS_OPS else False  # a stream by default, as in Ollama
        named, named_one = self.named_host(request)
        hosts, skipped = (named, {}) if named is not None else self.acting_hosts()
        path = f"/api/{op}"
        if named_one or (op == "push" and named is None):
            host = hosts[0] if named_one else await self.push_host(model)
            call = Call(endpoint=path, method=method, path=path, body=request.state.raw_body, model=None,
                        stream=stream, timeout=self.cfg.management_timeout)
            response = to_asgi(await self.forwarder.forward(call, pinned=host))
            if not stream and response.status_code < 400:
                await self.refresh([host])
            return response
        if op == "create":
            base = base_model(data)
            if base is not None:
                having = [a for a in hosts if self.registry.get(a).has_model(base)]
                hosts = having or hosts
        if not hosts:
            raise BadRequest(503, "no host can act now" + (f" ({len(skipped)} unhealthy)" if skipped else "")
                             + "; see /api/stats")
        if stream:
            return await self.merged_progress(op, hosts, skipped, orjson.dumps(data | {"stream": True}), model)
        body = orjson.dumps(data | {"stream": False}) if op in PROGRESS_OPS else request.state.raw_body
        return await self.each(op, method, hosts, skipped, body, model)

    async def _call(self, address: str, method: str, path: str, body: bytes) -> tuple[str, int, Any]:
        try:
            resp = await self.executor.open(address, method, path, body, self.cfg.management_timeout, stream=False)
            try:
                raw = await resp.read()
            finally:
                await resp.close()
        except UpstreamFailure as e:
            return address, 502, {"error": str(e)}
        return address, resp.status, _parse(raw)

    async def each(self, op: str, method: str, hosts: list[str], skipped: dict[str, str], body: bytes,
                   model: str) -> Response:
        """The call on every host at once; one JSON answer with each host's result."""
        started = time.perf_counter()
        results = await asyncio.gather(*(self._call(a, method, f"/api/{op}", body) for a in hosts))
        may_be_absent = op in ("copy", "delete")
        per_host: dict[str, Any] = {}
        ok: list[str] = []
        absent: list[str] = []
        failed: list[tuple[str, int, Any]] = []
        for address, status, result in results:
            if status < 400:
                outcome = "success"
                ok.append(address)
            elif status == 404 and may_be_absent:
                outcome = "absent"
                absent.append(address)
            else:
                outcome = "failed"
                failed.append((address, status, result))
            per_host[address] = {"status_code": status, "outcome": outcome, "result": result}
        for address, why in skipped.items():
            per_host[address] = {"status_code": None, "outcome": "skipped", "result": why}
        await self.refresh(ok)
        out: dict[str, Any] = {"hosts": per_host}
        if failed:
            status = _overall_failure([s for _, s, _ in failed])
            names = ", ".join(a for a, _, _ in failed)
            out = {"status": "failed on some hosts", "error": f"/api/{op} failed on {names}: "
                                                               f"{_message(failed[0][2])}"} | out
        elif not ok:
            status = 404
            out = {"status": "failed", "error": f"model '{model}' not found on any host"} | out
        else:
            status = 200
            out = {"status": "success"} | out
        self.book(f"/api/{op}", status, started, hosts, model, out.get("error"))
        return json_response(out, status)

    async def merged_progress(self, op: str, hosts: list[str], skipped: dict[str, str], body: bytes,
                              model: str) -> Response:
        """Every host's progress stream as one (see ProgressMerger)."""
        started = time.perf_counter()
        path = f"/api/{op}"

        async def open_one(address: str) -> tuple[str, Optional[UpstreamResponse], int, Any]:
            try:
                resp = await self.executor.open(address, "POST", path, body, self.cfg.management_timeout)
            except UpstreamFailure as e:
                return address, None, 502, {"error": str(e)}
            if resp.status >= 400:
                try:
                    raw = await resp.read()
                except UpstreamFailure as e:
                    raw = str(e).encode()
                finally:
                    await resp.close()
                return address, None, resp.status, _parse(raw)
            return address, resp, resp.status, None

        opened = await asyncio.gather(*(open_one(a) for a in hosts))
        live = [(a, resp) for a, resp, _, _ in opened if resp is not None]
        failed = {a: _message(result) for a, resp, _, result in opened if resp is None}
        merger = ProgressMerger(path, hosts, failed, skipped)
        if not live:
            status = _overall_failure([s for _, _, s, _ in opened])
            final = merger.final()
            self.book(path, status, started, hosts, model, final["error"])
            return json_response(final, status)

        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(256)

        async def read(address: str, resp: UpstreamResponse) -> None:
            pending = b""
            error = None
            try:
                async for chunk in resp.chunks():
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            await queue.put((address, _parse(line)))
                if pending.strip():
                    await queue.put((address, _parse(pending)))
            except UpstreamFailure as e:
                error = f"broke off: {e}"
            finally:
                await queue.put((address, error or True))

        tasks = [asyncio.ensure_future(read(a, resp)) for a, resp in live]
        state: dict[str, Any] = {"final": None}

        async def merged() -> AsyncIterator[bytes]:
            remaining = len(live)
            while remaining:
                address, item = await queue.get()
                if item is True or isinstance(item, str):
                    merger.ended(address, item if isinstance(item, str) else None)
                    remaining -= 1
                    continue
                line = merger.feed(address, item)
                if line is not None:
                    yield orjson.dumps(line) + b"\n"
            await self.refresh(sorted(merger.succeeded))
            state["final"] = final = merger.final()
            yield orjson.dumps(final) + b"\n"

        async def closed() -> None:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for _, resp in live:
                await resp.close()
            final = state["final"]
            if final is None:
                self.book(path, 499, started, hosts, model, "client went away before the end")
            else:
                self.book(path, 200, started, hosts, model, final.get("error"))

        return to_asgi(Streamed(200, merged(), _NDJSON, on_close=closed))

    # blobs -----------------------------------------------------------------------------------------
    @staticmethod
    def check_digest(digest: str) -> str:
        if not DIGEST.fullmatch(digest):  # not .match with $: it takes a digest ending in a line feed
            raise BadRequest(400, f"invalid digest {digest[:80]!r}: expected sha256:<64 hex digits>")
        return digest

    async def has_blob(self, address: str, digest: str) -> Optional[int]:
        """The host's answer to HEAD /api/blobs/<digest> (200: it has it), None when it did not answer."""
        try:
            resp = await self.executor.open(address, "HEAD", f"/api/blobs/{digest}", None, HEAD_TIMEOUT_S,
                                            stream=False)
            await resp.close()
        except UpstreamFailure:
            return None
        return resp.status

    async def blob_head(self, digest: str, request: Request) -> Response:
        self.check_digest(digest)
        hosts, _, _ = self.targets(request)
        if not hosts:
            return Response(status_code=404)
        statuses = await asyncio.gather(*(self.has_blob(a, digest) for a in hosts))
        if all(s == 200 for s in statuses):
            return Response(status_code=200)
        if any(s == 400 for s in statuses):
            return Response(status_code=400)
        return Response(status_code=404)

    async def blob_post(self, digest: str, request: Request) -> Response:
        self.check_digest(digest)
        started = time.perf_counter()
        hosts, skipped, _ = self.targets(request)
        endpoint = "/api/blobs/{digest}"
        if not hosts:
            raise BadRequest(503, "no host can take the blob now; see /api/stats")
        statuses = await asyncio.gather(*(self.has_blob(a, digest) for a in hosts))
        per_host: dict[str, Any] = {a: {"status_code": 200, "outcome": "already there"}
                                    for a, s in zip(hosts, statuses) if s == 200}
        lacking = [a for a, s in zip(hosts, statuses) if s != 200]
        for address, why in skipped.items():
            per_host[address] = {"status_code": None, "outcome": "skipped", "result": why}
        if not lacking:
            self.book(endpoint, 200, started, hosts)
            return json_response({"status": "success", "hosts": per_host}, 200)
        declared = request.headers.get("content-length")
        length = int(declared) if declared and declared.isdigit() else None
        tee = BodyTee(request.stream(), len(lacking))

        async def upload(i: int, address: str) -> tuple[str, int, Any]:
            try:
                resp = await self.executor.open(address, "POST", f"/api/blobs/{digest}",
                                                StreamBody(tee.reader(i), length), self.cfg.management_timeout,
                                                stream=False, content_type="application/octet-stream")
                try:
                    raw = await resp.read()
                finally:
                    await resp.close()
                return address, resp.status, _parse(raw)
            except BodySourceError as e:
                return address, 400, {"error": str(e)}
            except UpstreamFailure as e:
                return address, 502, {"error": str(e)}
            finally:
                tee.close(i)

        pump = asyncio.ensure_future(tee.pump())
        try:
            results = await asyncio.gather(*(upload(i, a) for i, a in enumerate(lacking)))
        finally:
            if not pump.done():
                pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        failed = [(a, s, r) for a, s, r in results if s >= 400]
        for address, status, result in results:
            per_host[address] = {"status_code": status, "outcome": "failed" if status >= 400 else "uploaded",
                                 "result": result}
        if failed:
            status = _overall_failure([s for _, s, _ in failed])
            error = f"upload of {digest} failed on {', '.join(a for a, _, _ in failed)}: {_message(failed[0][2])}"
            self.book(endpoint, status, started, hosts, error=error)
            return json_response({"error": error, "hosts": per_host}, status)
        self.book(endpoint, 201, started, hosts)
        return json_response({"status": "success", "bytes": tee.bytes_read, "hosts": per_host}, 201)


def _docs() -> dict[str, dict[str, Any]]:
    """openapi_extra of each operation."""
    progress, managing = "application/x-ndjson", (400, 401, 403, 404, 502)
    return {
        "pull": am.doc(am.PullRequest, am.ManagementResult, stream=progress, errors=managing, headers=am.HOST_HEADER),
        "push": am.doc(am.PushRequest, am.ManagementResult, stream=progress, errors=managing, headers=am.HOST_HEADER),
        "create": am.doc(am.CreateRequest, am.ManagementResult, stream=progress, errors=managing,
                         headers=am.HOST_HEADER),
        "copy": am.doc(am.CopyRequest, am.ManagementResult, errors=managing, headers=am.HOST_HEADER),
        "delete": am.doc(am.DeleteRequest, am.ManagementResult, errors=managing, headers=am.HOST_HEADER),
        "blob_head": {"responses": {"200": {"description": "Every host has it."},
                                    "404": {"description": "Some host lacks it."},
                                    "400": {"description": "Not a sha256 digest."}},
                      "parameters": am.doc(headers=am.HOST_HEADER)["parameters"]},
        "blob_post": am.doc(am.BINARY, am.ManagementResult, request_media="application/octet-stream",
                            answer_status=201, errors=(400, 401, 403, 502), headers=am.HOST_HEADER),
    }


def management_routes(m: Management) -> GatewayRouter:
    """The routes. Model management is an operator action, a client's when management_open is set."""
    routes = GatewayRouter()
    docs = _docs()

    def json_route(op: str, method: str) -> None:
        async def endpoint(request: Request) -> Response:  # annotated, so FastAPI passes the Request
            return await m.json_op(op, method, request)

        routes.declare(OPERATOR, method, f"/api/{op}", management=True, name=f"api_{op}",
                       summary=f"{op} a model", openapi_extra=docs.get(op))(endpoint)

    for op in ("pull", "push", "create", "copy"):
        json_route(op, "POST")
    json_route("delete", "DELETE")

    @routes.declare(OPERATOR, "HEAD", "/api/blobs/{digest}", management=True, name="api_blob_exists",
                    summary="whether every host has a blob", openapi_extra=docs.get("blob_head"))
    async def blob_head(digest: str, request: Request) -> Response:
        return await m.blob_head(digest, request)

    @routes.declare(OPERATOR, "POST", "/api/blobs/{digest}", management=True, body="any", name="api_blob_upload",
                    summary="upload a blob to every host that lacks it", openapi_extra=docs.get("blob_post"))
    async def blob_post(digest: str, request: Request) -> Response:
        return await m.blob_post(digest, request)

    return routes
