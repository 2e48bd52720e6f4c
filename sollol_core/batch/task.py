"""The work one Dask task does: one Ollama /api/embed call with a list input.

The function needs the standard library only (orjson, when the worker has it, parses the answer 15 times
faster), imports it inside its body, and is sent to the workers by value (runner.portable), so a
`dask worker` on another machine needs dask and the same Python version, not SOLLOL.

The task never raises for an upstream problem, and does not judge an error answer: the core does, with
the same rules as for live requests (request.outcome.classify). It answers (kind, status, payload):
    ("ok", 200, [embedding as JSON array bytes, one per input, in order])
    ("answer", status, body)     an error answer (status >= 400) and its body as the host sent it (bounded)
    ("unreachable", 0, message)  no connection: the host is down; the documents wait, no attempt counted
    ("failed", 0, message)       no answer in time, a broken connection, or an answer that is not an
                                 /api/embed answer: the host is at fault
"""

from __future__ import annotations

from typing import Any, Callable


def embed_chunk(host: str, model: str, texts: list[str], timeout: float,
                connect_timeout: float) -> tuple[str, int, Any]:
    import http.client
    import json
    import socket

    loads: Callable[[bytes], Any]
    dumps: Callable[[Any], bytes]
    try:
        import orjson

        loads, dumps = orjson.loads, orjson.dumps
    except ImportError:
        loads = json.loads

        def dumps(vector: Any) -> bytes:
            return json.dumps(vector, separators=(",", ":")).encode()

    name, _, port = host.rpartition(":")
    body = json.dumps({"model": model, "input": texts}).encode("utf-8")
    conn = http.client.HTTPConnection(name.strip("[]"), int(port), timeout=connect_timeout)
    try:
        try:
            conn.connect()
        except OSError as e:
            return ("unreachable", 0, f"cannot connect: {e.strerror or e}")
        conn.sock.settimeout(timeout)
        try:
            conn.request("POST", "/api/embed", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        except socket.timeout:
            return ("failed", 0, f"no answer within {timeout:g} s")
        except (OSError, http.client.HTTPException) as e:
            return ("failed", 0, f"connection broke: {type(e).__name__}: {e}")
    finally:
        conn.close()
    status = resp.status
    if status >= 400:
        return ("answer", status, data[:4096])
    try:
        embeddings = loads(data)["embeddings"]
    except (ValueError, KeyError, TypeError):
        return ("failed", 0, "the host answered something that is not an /api/embed answer")
    if not isinstance(embeddings, list) or len(embeddings) != len(texts):
        got = len(embeddings) if isinstance(embeddings, list) else "no"
        return ("failed", 0, f"the host answered {got} embeddings for {len(texts)} inputs")
    out = []
    for vector in embeddings:
        if not isinstance(vector, list) or not vector:
            return ("failed", 0, "the host answered an empty or malformed embedding")
        out.append(dumps(vector))
    return ("ok", status, out)
