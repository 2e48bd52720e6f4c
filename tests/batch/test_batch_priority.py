"""Batch chunks take their slots through the gateway queue in the `batch` class: an interactive request
waiting for the same slots goes ahead of the chunks that wait, so it waits for the chunk in the host's slot
and, with queue.batch_pipeline (a one-slot host holds one more chunk waiting inside it, so it never idles
between chunks), for that one too: never for the chunks still waiting in the gateway."""

from __future__ import annotations

import pytest

from sollol_core.sim import SimNodeSpec

from helpers import EMBED_MODEL, settled, wait_until

pytestmark = pytest.mark.timeout(120)



@pytest.mark.parametrize("pipeline", [1, 0])
def test_interactive_embed_goes_ahead_of_waiting_batch_chunks(sim_cluster, gateway, client, tmp_path, pipeline):
    sim = sim_cluster(*[SimNodeSpec(name=n, latency_ms=20, embed_ms_per_input=10, capacity=4, seed=i,
                                    models=[EMBED_MODEL]) for i, n in enumerate("ab")])
    sollol = gateway(sim.addresses, default_num_parallel=1, batch_db=str(tmp_path / "q.db"),
                     autobatch_interval=0.2, autobatch_max_batch_size=640, batch_in_flight_per_host=4,
                     queue={"batch_pipeline": pipeline})
    http = client(sollol)
    docs = [f"doc {i}" for i in range(640)]  # 20 chunks for 2 one-slot hosts: several always wait
    job = http.post("/api/embed/batch", json={"model": EMBED_MODEL, "docs": docs}).json()["job_id"]
    wait_until(lambda: sollol.queue.depth()["batch"] >= 4, timeout=60, interval=0.01,
               what="batch chunks waiting for slots in the gateway queue")
    waiting_chunks = sollol.queue.depth()["batch"]
    marks = [len(node.received) for node in sim.nodes]  # what each host had been sent before the question
    r = http.post("/api/embed", json={"model": EMBED_MODEL, "input": "urgent question"})
    assert r.status_code == 200
    record = [x for x in settled(sollol) if x.endpoint == "/api/embed"][-1]
    landed = next(i for i, node in enumerate(sim.nodes)
                  if any(body.get("input") == "urgent question" for _, body in node.received))
    after = sim.nodes[landed].received[marks[landed]:]
    position = next(i for i, (_, body) in enumerate(after) if body.get("input") == "urgent question")
    # the first slot to free went to it: at most the chunk that held the slot when it came (granted, and still
    # on its way through Dask) reached that host before it; first come first served would have sent the
    # waiting chunks first, two or more for each host
    assert position <= 1 + pipeline, (position, waiting_chunks, record.wait_ms)
    assert waiting_chunks >= 4 and record.wait_ms > 0
    # embedding models have one slot: never more than it and the pipelined chunk inside a host at once
    final = wait_until(lambda: (lambda s: s if s["status"] == "done" else None)(
        http.get(f"/api/batch/{job}", params={"limit": 1}).json()), timeout=60, what="the batch to finish")
    assert final["done"] == 640
    assert all(n.in_flight == 0 for n in sim.nodes)
