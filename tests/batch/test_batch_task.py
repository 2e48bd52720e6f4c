"""The Dask task itself (one /api/embed call), run in this process against simulated nodes."""

from __future__ import annotations

import json
import pickle
import socket
import sys

import pytest

from sollol_core.batch.runner import portable
from sollol_core.batch.task import embed_chunk
from sollol_core.request.outcome import Verdict, classify
from sollol_core.sim import SimNodeSpec, sim_embedding

MODEL = "nomic-embed-text"


@pytest.fixture(scope="module")
def node(module_sim_cluster):
    return module_sim_cluster(SimNodeSpec(name="t", latency_ms=0, models=[MODEL], embed_dim=24))


@pytest.fixture(autouse=True)
def healthy(node):
    yield
    n = node.nodes[0]
    n.failure_rate, n.hang = 0.0, False


def test_ok_exact_vectors_in_order(node):
    texts = ["first", "second", "third ünïcode"]
    kind, status, out = embed_chunk(node.addresses[0], MODEL, texts, 5.0, 2.0)
    assert (kind, status) == ("ok", 200)
    assert [json.loads(v) for v in out] == [sim_embedding(t, 24) for t in texts]
    body = node.nodes[0].received[-1]
    assert body == ("/api/embed", {"model": MODEL, "input": texts})  # one call, list input


def test_ok_without_orjson(node, monkeypatch):
    monkeypatch.setitem(sys.modules, "orjson", None)  # a worker without orjson: standard library only
    kind, _, out = embed_chunk(node.addresses[0], MODEL, ["x", "y"], 5.0, 2.0)
    assert kind == "ok" and [json.loads(v) for v in out] == [sim_embedding("x", 24), sim_embedding("y", 24)]


def test_failures_are_classified(node):
    address = node.addresses[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    assert embed_chunk(closed, MODEL, ["a"], 5.0, 2.0)[0] == "unreachable"
    # error answers come back as the host sent them; the core judges them (request.outcome.classify)
    kind, status, body = embed_chunk(address, "missing-model", ["a"], 5.0, 2.0)
    assert (kind, status) == ("answer", 404) and classify(status, body).verdict is Verdict.MODEL_MISSING
    kind, status, body = embed_chunk(address, MODEL, [1, 2], 5.0, 2.0)  # the node refuses the input
    assert (kind, status) == ("answer", 400) and classify(status, body).verdict is Verdict.CLIENT_ERROR
    node.nodes[0].failure_rate = 1.0
    kind, status, body = embed_chunk(address, MODEL, ["a"], 5.0, 2.0)
    assert (kind, status) == ("answer", 500) and b"simulated failure" in body
    assert classify(status, body).verdict is Verdict.HOST_FAILED
    node.nodes[0].failure_rate = 0.0
    node.nodes[0].load_failure = MODEL
    kind, status, body = embed_chunk(address, MODEL, ["a"], 5.0, 2.0)
    assert classify(status, body).verdict is Verdict.UNFIT
    node.nodes[0].load_failure = None
    node.nodes[0].hang = True
    kind, status, msg = embed_chunk(address, MODEL, ["a"], 0.3, 2.0)
    assert kind == "failed" and "no answer within 0.3 s" in msg


def test_portable_copy_travels_by_value(node):
    fn = portable(embed_chunk)
    payload = pickle.dumps(fn)  # what Dask's first, plain pickle makes of it
    assert b"sollol_core" not in payload.replace(b"sollol_core/batch/task.py", b"")  # the code, not a reference
    assert b"cloudpickle" in payload
    kind, _, out = pickle.loads(payload)(node.addresses[0], MODEL, ["z"], 5.0, 2.0)
    assert kind == "ok" and json.loads(out[0]) == sim_embedding("z", 24)


def test_creating_sollol_in_a_spawned_reimport_of_main_is_refused():
    from sollol_core import SOLLOL, SollolConfig
    from sollol_core.errors import SpawnedReimport

    module_code = compile("SOLLOL(SollolConfig())", "<spawned main>", "exec")
    with pytest.raises(SpawnedReimport, match="__name__"):  # as a Dask worker re-running an unguarded script
        exec(module_code, {"__name__": "__mp_main__", "SOLLOL": SOLLOL, "SollolConfig": SollolConfig})
    exec(module_code, {"__name__": "__main__", "SOLLOL": SOLLOL, "SollolConfig": SollolConfig})  # the script
