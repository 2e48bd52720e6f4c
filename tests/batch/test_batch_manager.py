"""BatchManager on its own narrow parts (BatchDeps), started and stopped explicitly, read through typed calls."""

from __future__ import annotations

import json

import pytest

from sollol_core.config import SollolConfig
from sollol_core.errors import BatchUnavailable
from sollol_core.wiring import build


async def test_typed_reads_of_a_job_without_the_service(tmp_path) -> None:
    parts = build(SollolConfig(hosts=["a:1"], batch_db=str(tmp_path / "q.db"), autobatch_enabled=False))
    batch = parts.batch
    with pytest.raises(BatchUnavailable):
        await batch.results_page("nope", 0, 10)  # not started
    await batch.start()
    try:
        assert parts.components.get("batch").state == "off"  # no file until the first batch
        info = await batch.enqueue("m", ["alpha", "beta", "gamma"], ["a", "b", "c"])
        assert parts.components.get("batch").state == "ready"
        assert batch.job(info.job_id)["total"] == 3 and batch.job("nope") is None
        assert batch.trigger() == {"triggered": False, "queued": 3, "reason": "SOLLOL is not running"}
        token = batch.auto.token
        claimed = await batch.db("claim", 3, token)
        await batch.db("complete", [d.seq for d in claimed[:2]], ["[1.0]", "[2.0]"], token)
        await batch.db("fail", [claimed[2].seq], "refused", token)
        page = await batch.results_page(info.job_id, 1, 10)
        assert [(i, doc, json.loads(emb)) for i, doc, emb in page] == [(1, "b", [2.0])]
        after = await batch.results_after(info.job_id, -1, 1)
        assert [(i, doc) for i, doc, _ in after] == [(0, "a")]
        assert await batch.errors(info.job_id, 10) == [("c", "refused")]
        assert batch.status()["done"] == 2 and batch.status()["failed"] == 1
    finally:
        await batch.stop()
    assert parts.components.get("batch").state == "off"
    await batch.stop()  # twice is harmless
