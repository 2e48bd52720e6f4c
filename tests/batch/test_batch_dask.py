"""Batch embeddings on a real Dask LocalCluster over simulated nodes of known speed.

One gateway and one Dask cluster for the module (Dask starts once). The nodes' vectors are deterministic
(sim_embedding), so every result is checked exactly.
"""

from __future__ import annotations

import io
import json
import sys
import time

import pytest

from sollol_core.sim import SimNodeSpec, sim_embedding

from helpers import EMBED_MODEL, wait_until

pytestmark = pytest.mark.timeout(120)

# fast: 2 ms per document, mid: 8 ms, slow: 40 ms; one request at a time each, like Ollama's default. A chunk
# of 32 documents takes the slow node 1.2 s more than the fast one, far more than what a busy machine adds to
# every chunk alike, so the fast node takes more chunks however fast the machine is.
SPECS = [SimNodeSpec(name=name, latency_ms=0, embed_ms_per_input=ms, capacity=1, seed=i, models=[EMBED_MODEL])
         for i, (name, ms) in enumerate((("fast", 2.0), ("mid", 8.0), ("slow", 40.0)))]
FAST, MID, SLOW = 0, 1, 2


@pytest.fixture(scope="module")
def stack(module_sim_cluster, module_gateway, tmp_path_factory):
    sim = module_sim_cluster(*SPECS)
    db = tmp_path_factory.mktemp("batch") / "queue.db"
    sollol = module_gateway(sim.addresses, batch_db=str(db), autobatch_interval=0.3,
                            autobatch_max_batch_size=200, unhealthy_recheck_interval=0.5)
    return sim, sollol


@pytest.fixture
def http(stack, client):
    return client(stack[1])


def submit(http, docs, ids=None):
    body = {"model": EMBED_MODEL, "docs": docs}
    if ids is not None:
        body["ids"] = ids
    r = http.post("/api/embed/batch", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["queued"] == len(docs)
    return r.json()["job_id"]


def job_state(http, job_id):
    return http.get(f"/api/batch/{job_id}", params={"limit": 1}).json()


def wait_finished(http, job_id, timeout=40.0):
    return wait_until(lambda: (lambda s: s if s["status"] in ("done", "failed") else None)(job_state(http, job_id)),
                      timeout=timeout, interval=0.1, what=f"batch job {job_id} to finish")


def all_results(http, job_id):
    lines = http.get(f"/api/batch/{job_id}", params={"format": "jsonl"}).text.splitlines()
    return [json.loads(line) for line in lines]


def check_vectors(results, docs_by_id):
    assert len(results) == len(docs_by_id)
    assert len({r["id"] for r in results}) == len(results)  # no duplicate
    for r in results:
        assert r["embedding"] == sim_embedding(docs_by_id[r["id"]]), r["id"]


class NoDescriptor(io.TextIOBase):
    """What the dashboard's output capture looks like to code that starts processes: no file descriptor."""

    def write(self, text: str) -> int:
        return len(text)

    def fileno(self) -> int:
        return -1


def test_job_of_thousands_completes_with_exact_vectors_faster_hosts_more_chunks(stack, http, monkeypatch):
    sim, sollol = stack
    docs = [f"document {i}: {'lorem ipsum ' * (i % 7)}" for i in range(3000)]
    ids = [f"doc-{i}" for i in range(3000)]
    monkeypatch.setattr(sys, "stdout", NoDescriptor())  # Dask starts while a dashboard would run
    monkeypatch.setattr(sys, "stderr", NoDescriptor())
    job_id = submit(http, docs, ids)
    # the gateway answers while Dask starts (nothing in the request path waits on it): a health check asked
    # and answered while Dask's state was "starting" on both sides of it
    seen_states, answered_while_starting = set(), 0

    def dask_state() -> str:
        return sollol.get_status()["components"]["dask"]["state"]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        before = dask_state()
        assert http.get("/api/health").status_code == 200
        state = dask_state()
        seen_states |= {before, state}
        answered_while_starting += before == state == "starting"
        if state in ("ready", "failed"):
            break
        time.sleep(0.05)
    monkeypatch.undo()
    assert "starting" in seen_states and state == "ready", (seen_states, sollol.components.get("dask"))
    assert answered_while_starting >= 1
    final = wait_finished(http, job_id)
    assert (final["status"], final["done"], final["failed"], final["total"]) == ("done", 3000, 0, 3000)
    results = all_results(http, job_id)
    check_vectors(results, dict(zip(ids, docs)))
    assert [r["id"] for r in results] == ids  # in document order
    # paging
    page = http.get(f"/api/batch/{job_id}", params={"offset": 2990, "limit": 50}).json()
    assert [r["id"] for r in page["results"]] == ids[2990:] and page["next_offset"] is None
    page = http.get(f"/api/batch/{job_id}", params={"offset": 10, "limit": 5}).json()
    assert [r["id"] for r in page["results"]] == ids[10:15] and page["next_offset"] == 15
    assert page["results"][0]["embedding"] == sim_embedding(docs[10])
    # each chunk was one /api/embed call with a list input; every node took a share, the fast one more
    # chunks than the slow one (a host gets its next chunk when one finishes)
    chunks = http.get("/api/batch-status").json()["chunks_by_host"]
    fast, slow = chunks.get(sim.addresses[FAST], 0), chunks.get(sim.addresses[SLOW], 0)
    assert slow > 0 and fast > slow, chunks
    calls = [body for node in sim.nodes for path, body in node.received if path == "/api/embed"]
    assert calls and all(isinstance(b["input"], list) for b in calls)
    assert max(len(b["input"]) for b in calls) <= sollol.config.batch_chunk_size
    # the registry saw the batch (one source of truth): requests counted, nothing left in flight
    views = {v.host: v for v in sollol.host_views()}
    assert views[sim.addresses[FAST]].requests_total >= fast
    assert all(v.in_flight == 0 for v in views.values())
    view = sollol.snapshot().batch
    job_view = next(j for j in view.jobs if j.job_id == job_id)
    assert (job_view.status, job_view.done, job_view.total) == ("done", 3000, 3000) and job_view.docs_per_s > 0
    status = http.get("/api/batch-status").json()
    assert status["in_progress"] == 0 and status["queued"] == 0 and status["done"] >= 3000


def test_host_killed_mid_job_loses_nothing(stack, http):
    sim, sollol = stack
    docs = [f"killed-host doc {i}" for i in range(2400)]
    job_id = submit(http, docs)
    wait_until(lambda: job_state(http, job_id)["done"] >= 400, timeout=30, interval=0.05, what="a first share")
    sim.kill(MID)
    try:
        assert job_state(http, job_id)["done"] < 2400  # killed mid-job
        worked = [b for path, b in sim.nodes[MID].received if path == "/api/embed"
                  and any(t.startswith("killed-host") for t in b["input"])]
        assert worked  # it had a share of this job when it went
        final = wait_finished(http, job_id)
        assert (final["status"], final["done"], final["failed"]) == ("done", 2400, 0)
        check_vectors(all_results(http, job_id), {str(i): d for i, d in enumerate(docs)})
        assert sollol.registry.get(sim.addresses[MID]).failures_total >= 1
    finally:
        sim.revive(MID)
    wait_until(lambda: sollol.registry.get(sim.addresses[MID]).state.value == "healthy", timeout=15,
               what="the revived node to be healthy again")


def test_failing_host_chunks_are_retried_elsewhere(stack, http):
    sim, sollol = stack
    sim.nodes[FAST].failure_rate = 1.0  # every call answers HTTP 500
    try:
        docs = [f"flaky doc {i}" for i in range(300)]
        job_id = submit(http, docs)
        http.post("/api/batch/trigger")
        final = wait_finished(http, job_id)
        assert (final["status"], final["done"], final["failed"]) == ("done", 300, 0)
        check_vectors(all_results(http, job_id), {str(i): d for i, d in enumerate(docs)})
        assert sollol.registry.get(sim.addresses[FAST]).failures_total >= 1
    finally:
        sim.nodes[FAST].failure_rate = 0.0
    wait_until(lambda: sollol.registry.get(sim.addresses[FAST]).state.value == "healthy", timeout=15,
               what="the fast node to be healthy again")


def test_a_host_that_cannot_load_the_model_is_unfit_for_it_not_ejected(stack, http):
    """500 "model requires more system memory" on a chunk: the (host, model) is left out for a while, as on the
    live path; the host stays healthy, nothing counts against it, and every document is embedded elsewhere."""
    sim, sollol = stack
    fast = sim.addresses[FAST]
    failures = sollol.registry.get(fast).failures_total
    sim.nodes[FAST].load_failure = EMBED_MODEL
    try:
        docs = [f"too big for the fast node {i}" for i in range(120)]
        job_id = submit(http, docs)
        http.post("/api/batch/trigger")
        final = wait_finished(http, job_id)
        assert (final["status"], final["done"], final["failed"]) == ("done", 120, 0)
        check_vectors(all_results(http, job_id), {str(i): d for i, d in enumerate(docs)})
        host = sollol.registry.get(fast)
        assert host.state.value == "healthy" and host.failures_total == failures
        assert sollol.slots.is_unfit(fast, EMBED_MODEL)
    finally:
        sim.nodes[FAST].load_failure = None
        sollol.slots.forget_host(fast)


def test_trigger_takes_up_to_max_batch_size_whatever_the_minimum(stack, http):
    sim, sollol = stack
    sollol.update_config(autobatch_min_batch_size=150, autobatch_max_batch_size=150)
    try:
        small = submit(http, [f"small {i}" for i in range(20)])
        time.sleep(1.0)  # three intervals: under the minimum, nothing is taken
        assert job_state(http, small)["queued"] == 20
        sollol.update_config(autobatch_enabled=False)
        big = submit(http, [f"big {i}" for i in range(200)])
        time.sleep(0.5)
        assert job_state(http, big)["queued"] == 200  # disabled: not even a full batch starts
        r = http.post("/api/batch/trigger")
        assert r.status_code == 200 and r.json() == {"triggered": True, "queued": 220}
        wait_finished(http, small)
        # one batch of at most 150, oldest first: the 20 small ones and 130 of the big job
        wait_until(lambda: job_state(http, big)["done"] == 130, timeout=20, what="the triggered batch")
        time.sleep(0.5)
        assert job_state(http, big)["queued"] == 70
        assert sollol.trigger_batch()["triggered"] is True  # the dashboard's `b`
        assert wait_finished(http, big)["done"] == 200
    finally:
        sollol.update_config(autobatch_enabled=True, autobatch_min_batch_size=1, autobatch_max_batch_size=200)


def test_documents_every_host_fails_are_reported_failed_not_done(stack, http):
    sim, sollol = stack
    sollol.update_config(batch_max_attempts=1)
    for node in sim.nodes:
        node.failure_rate = 1.0
    try:
        job_id = submit(http, ["doomed a", "doomed b"])
        final = wait_finished(http, job_id, timeout=30)
        assert (final["status"], final["done"], final["failed"]) == ("failed", 0, 2)
        page = http.get(f"/api/batch/{job_id}").json()
        assert page["results"] == [] and len(page["errors"]) == 2
        assert all("simulated failure" in e["error"] for e in page["errors"])
        assert all_results(http, job_id) == []
    finally:
        for node in sim.nodes:
            node.failure_rate = 0.0
        sollol.update_config(batch_max_attempts=3)
