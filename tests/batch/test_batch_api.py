"""POST /api/embed/batch and friends without Dask running: limits, bad input, durable acceptance."""

from __future__ import annotations

import sqlite3

import pytest

from helpers import EMBED_MODEL

LIMITS = dict(batch_max_docs_per_request=50, batch_max_doc_chars=200, max_body_bytes=64 * 1024,
              autobatch_enabled=False)


@pytest.fixture(scope="module")
def stack(module_sim_cluster, module_gateway, tmp_path_factory):
    sim = module_sim_cluster(n=2)
    db = tmp_path_factory.mktemp("batch") / "queue.db"
    sollol = module_gateway(sim.addresses, batch_db=str(db), **LIMITS)
    return sollol, db


@pytest.fixture
def http(stack, client):
    return client(stack[0])


def post(http, body):
    return http.post("/api/embed/batch", json=body)


def test_no_database_file_until_the_first_batch_and_dask_waits(stack, http):
    sollol, db = stack
    assert not db.exists()  # a gateway that never batches leaves no file behind
    status = http.get("/api/batch-status").json()
    assert status["available"] is False and status["queued"] == 0 and status["jobs"] == []
    assert sollol.snapshot().batch.available is False
    assert status["dask"]["state"] == "off" and "first batch" in status["dask"]["detail"]
    assert sollol.get_status()["components"]["dask"]["state"] == "off"


def test_accepted_means_stored(stack, http):
    sollol, db = stack
    r = post(http, {"model": EMBED_MODEL, "docs": ["alpha", "beta", "gamma"], "ids": ["a", "b", 7]})
    assert r.status_code == 200
    body = r.json()
    assert body["queued"] == 3 and len(body["job_id"]) == 32
    with sqlite3.connect(db) as conn:  # already in the file, committed, when the answer came
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT doc_id, text, state FROM docs WHERE job_id=? ORDER BY idx",
                            (body["job_id"],)).fetchall()
    assert rows == [("a", "alpha", 0), ("b", "beta", 0), ("7", "gamma", 0)]
    job = http.get(f"/api/batch/{body['job_id']}").json()
    assert (job["status"], job["total"], job["queued"], job["done"], job["results"]) == ("queued", 3, 3, 0, [])
    status = http.get("/api/batch-status").json()
    assert status["available"] is True and status["queued"] >= 3
    assert any(j["job_id"] == body["job_id"] and j["status"] == "queued" for j in status["jobs"])
    view = sollol.snapshot().batch
    assert view.available and view.queued >= 3 and body["job_id"] in [j.job_id for j in view.jobs]
    # autobatch is off and nothing triggered: nothing was taken, and Dask was not started for it
    assert sollol.get_status()["components"]["dask"]["state"] == "off"


@pytest.mark.parametrize("body, status, words", [
    ({"model": EMBED_MODEL, "docs": []}, 400, "empty"),
    ({"model": EMBED_MODEL, "docs": ["ok", ""]}, 400, "docs[1] is empty"),
    ({"model": EMBED_MODEL, "docs": ["ok", "   "]}, 400, "docs[1] is empty"),
    ({"model": EMBED_MODEL, "docs": "not a list"}, 400, "list"),
    ({"model": EMBED_MODEL}, 400, "docs is required"),
    ({"model": EMBED_MODEL, "docs": ["ok", 3]}, 400, "docs[1] must be a string"),
    ({"docs": ["ok"]}, 400, "model is required"),
    ({"model": "", "docs": ["ok"]}, 400, "model is required"),
    ({"model": EMBED_MODEL, "docs": ["a", "b"], "ids": ["x"]}, 400, "one id per document"),
    ({"model": EMBED_MODEL, "docs": ["a", "b"], "ids": ["x", "x"]}, 400, "unique"),
    ({"model": EMBED_MODEL, "docs": ["a"], "ids": [None]}, 400, "ids[0]"),
    ({"model": EMBED_MODEL, "docs": ["d"] * 51}, 413, "51 documents is over the limit of 50"),
    ({"model": EMBED_MODEL, "docs": ["ok", "x" * 201]}, 413, "docs[1] has 201 characters"),
    ({"model": "no-such-model", "docs": ["ok"]}, 404, "not found"),
])
def test_limits_and_bad_input(stack, http, body, status, words):
    sollol, db = stack
    before = sollol.batch.status()
    r = post(http, body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    after = sollol.batch.status()
    assert (after["queued"], after["jobs_total"]) == (before["queued"], before["jobs_total"])  # nothing stored


def test_body_over_max_body_bytes_and_not_json(http):
    r = post(http, {"model": EMBED_MODEL, "docs": ["y" * 150] * 500})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]
    r = http.post("/api/embed/batch", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]


def test_at_the_limits_is_accepted(http):
    r = post(http, {"model": EMBED_MODEL, "docs": ["x" * 200] * 50})
    assert r.status_code == 200 and r.json()["queued"] == 50


def test_job_lookup_errors(http):
    assert http.get("/api/batch/nope").status_code == 404
    job = post(http, {"model": EMBED_MODEL, "docs": ["a"]}).json()["job_id"]
    for query in ("limit=0", "limit=1001", "offset=-1", "limit=x", "format=xml"):
        r = http.get(f"/api/batch/{job}?{query}")
        assert r.status_code == 400 and r.json()["error"], query
    assert http.get(f"/api/batch/{job}?format=jsonl").text == ""  # nothing embedded yet

