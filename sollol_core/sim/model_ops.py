"""Model management as Ollama answers it: /api/pull, /api/push, /api/create (from a model, or from
uploaded blobs), /api/copy, /api/delete, and HEAD/POST /api/blobs/sha256:<hex>.

Blobs are checked, not kept: an upload is read in chunks and hashed as it arrives, and the node records
digest -> size in ``node.blobs`` (enough for /api/create to know which files it has)."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Mapping, Sequence

import orjson
from aiohttp import web

from .metadata import meta
from .metadata import norm as norm_name
from .wire import NDJSON, NL, SimError, json_response

if TYPE_CHECKING:
    from .node import NodeState, Route

_DIGEST_RE = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")
_READ_CHUNK = 64 * 1024


def _status_answer(statuses: Sequence[Mapping[str, object]], stream: bool) -> web.StreamResponse:
    if not stream:
        return json_response({"status": "success"})
    return web.Response(body=b"".join(orjson.dumps(s, option=NL) for s in statuses), headers=NDJSON)


def _name(body: dict) -> str:
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SimError(400, "model is required")
    return norm_name(name)


def _digest(value: object) -> str:
    """Ollama's digest rule; the canonical "sha256:<hex>" form. 400 "invalid digest format" otherwise."""
    m = _DIGEST_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise SimError(400, "invalid digest format")
    return "sha256:" + m.group(1).lower()


async def pull(node: "NodeState", request: web.Request) -> web.StreamResponse:
    body = await node.body(request)
    name = _name(body)
    m = meta(name)
    if name not in node.models:
        node.models.append(name)
    layer = {"status": f"pulling {m.digest[:12]}", "digest": f"sha256:{m.digest}", "total": m.size,
             "completed": m.size}
    statuses: list[dict[str, object]] = [{"status": "pulling manifest"}, layer, {"status": "verifying sha256 digest"},
                {"status": "writing manifest"}, {"status": "success"}]
    return _status_answer(statuses, body.get("stream") is not False)


async def push(node: "NodeState", request: web.Request) -> web.StreamResponse:
    body = await node.body(request)
    _, name = node.model(body, legacy_name=True)
    m = meta(name)
    statuses: list[dict[str, object]] = [{"status": "retrieving manifest"},
                {"status": "starting upload", "digest": f"sha256:{m.digest}", "total": m.size},
                {"status": "pushing manifest"}, {"status": "success"}]
    return _status_answer(statuses, body.get("stream") is not False)


async def create(node: "NodeState", request: web.Request) -> web.StreamResponse:
    """From a model on the node ("from"), or from blobs already uploaded ("files": {name: digest})."""
    body = await node.body(request)
    name = _name(body)
    source, files = body.get("from"), body.get("files")
    if files is not None:
        if not isinstance(files, dict) or not files:
            raise SimError(400, "no files provided")
        digests = []
        for path, value in files.items():
            if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/"):
                raise SimError(400, "file path must be relative")
            digest = _digest(value)
            if digest not in node.blobs:
                # Ollama opens the blob file and fails with the OS error
                raise SimError(400, f"open /root/.ollama/models/blobs/{digest.replace(':', '-')}: "
                                    "no such file or directory")
            digests.append(digest)
        statuses = [{"status": "parsing GGUF"}]
        statuses += [{"status": f"using existing layer {d}"} for d in digests]
    elif isinstance(source, str) and source:
        if norm_name(source) not in node.models:
            raise SimError(404, f"model '{source}' not found")
        statuses = [{"status": f"using existing layer sha256:{meta(name).digest}"}]
    else:
        raise SimError(400, "neither 'from' or 'files' was specified")
    if name not in node.models:
        node.models.append(name)
    statuses += [{"status": "writing manifest"}, {"status": "success"}]
    return _status_answer(statuses, body.get("stream") is not False)


async def copy(node: "NodeState", request: web.Request) -> web.StreamResponse:
    body = await node.body(request)
    source, dest = body.get("source"), body.get("destination")
    if not isinstance(source, str) or not isinstance(dest, str) or not source or not dest:
        raise SimError(400, "source and destination are required")
    if norm_name(source) not in node.models:
        raise SimError(404, f"model '{source}' not found")
    if norm_name(dest) not in node.models:
        node.models.append(norm_name(dest))
    return web.Response()


async def delete(node: "NodeState", request: web.Request) -> web.StreamResponse:
    body = await node.body(request)
    _, name = node.model(body, legacy_name=True)
    node.models.remove(name)
    node.unload(name)
    return web.Response()


async def head_blob(node: "NodeState", request: web.Request) -> web.StreamResponse:
    digest = _digest(request.match_info["digest"])
    return web.Response(status=200 if digest in node.blobs else 404)


async def upload_blob(node: "NodeState", request: web.Request) -> web.StreamResponse:
    """The raw bytes, hashed as they stream in; 201 when stored, 200 when already there (nothing read),
    400 when their sha256 is not the one in the path."""
    digest = _digest(request.match_info["digest"])
    if digest in node.blobs:
        return web.Response(status=200)
    hasher, size = hashlib.sha256(), 0
    while chunk := await request.content.read(_READ_CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    got = "sha256:" + hasher.hexdigest()
    node.record(request.path, {"digest": digest, "size": size})
    if got != digest:
        raise SimError(400, f'digest mismatch, expected "{digest}", got "{got}"')
    node.blobs[digest] = size
    return web.Response(status=201)


ROUTES: list[Route] = [
    ("POST", "/api/pull", pull, "ollama"),
    ("POST", "/api/push", push, "ollama"),
    ("POST", "/api/create", create, "ollama"),
    ("POST", "/api/copy", copy, "ollama"),
    ("DELETE", "/api/delete", delete, "ollama"),
    ("HEAD", "/api/blobs/{digest}", head_blob, "ollama"),
    ("POST", "/api/blobs/{digest}", upload_blob, "ollama"),
]
