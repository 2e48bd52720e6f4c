"""Batch jobs belong to their client, through the real app on 127.0.0.1: another key gets 404 for a job and
sees none of it in /api/batch-status, the operator sees all, a key is held to its quota of queued
documents, and finished jobs are deleted from the SQLite file after batch_retention_hours.

Autobatch is off: the tests finish documents through the gateway's own batch store (claim, complete), so
no Dask cluster is needed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from sollol_core.batch.store import BatchStore

from helpers import EMBED_MODEL, wait_until

pytestmark = pytest.mark.timeout(90)

A, B, QUOTA_KEY, TOKEN = "sk-batch-a-81f0", "sk-batch-b-2c7e", "sk-batch-q-5d11", "tok-batch-op-9a"
KEYS = {A: {"name": "team-a"}, B: {"name": "team-b"}, QUOTA_KEY: {"name": "small", "max_queued_docs": 4}}


def key(k: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {k}"}


@pytest.fixture
def stack(sim_cluster, gateway, client, tmp_path):
    cluster = sim_cluster(n=1, latency_ms=1, tokens=2)
    db = tmp_path / "queue.db"
    sollol = gateway(cluster.addresses, api_keys=KEYS, admin_token=TOKEN, batch_db=str(db),
                     autobatch_enabled=False, batch_max_queued_docs_per_key=1000)
    return sollol, client(sollol), db


def submit(http, k: str, docs: list[str]):
    return http.post("/api/embed/batch", json={"model": EMBED_MODEL, "docs": docs}, headers=key(k))


def finish(sollol, vectors: dict[str, str]) -> None:
    """Embed every queued document as a host would: claim them and write `vectors[text]` (default [0.5])."""
    batch = sollol.batch

    async def run() -> None:
        token = batch.auto.token
        claimed = await batch.db("claim", 1000, token)
        await batch.db("complete", [d.seq for d in claimed], [vectors.get(d.text, "[0.5]") for d in claimed], token)

    sollol.run_coroutine(run(), timeout=20)


def test_another_key_gets_404_and_sees_none_of_it(stack):
    sollol, http, _ = stack
    r = http.post("/api/embed/batch", json={"model": EMBED_MODEL, "docs": ["x"]})
    assert r.status_code == 401 and sollol.batch.status()["jobs_total"] == 0  # keyless: nothing queued
    job = submit(http, A, ["alpha", "beta"]).json()["job_id"]
    finish(sollol, {"alpha": "[1.0]", "beta": "[2.0]"})
    mine = http.get(f"/api/batch/{job}", headers=key(A)).json()
    assert mine["status"] == "done" and [r["embedding"] for r in mine["results"]] == [[1.0], [2.0]]
    for params in ({}, {"format": "jsonl"}, {"offset": 1}):
        r = http.get(f"/api/batch/{job}", params=params, headers=key(B))
        assert r.status_code == 404 and "embedding" not in r.text, params
    theirs = http.get("/api/batch-status", headers=key(B)).json()
    assert theirs["jobs"] == [] and theirs["done"] == 0 and job not in json.dumps(theirs)
    own = http.get("/api/batch-status", headers=key(A)).json()
    assert [j["job_id"] for j in own["jobs"]] == [job] and own["done"] == 2
    submit(http, B, ["gamma"])
    everything = http.get("/api/batch-status", headers=key(TOKEN)).json()
    assert {j["owner"] for j in everything["jobs"]} == {"team-a", "team-b"}
    assert http.get(f"/api/batch/{job}", headers=key(TOKEN)).json()["results"] == mine["results"]
    assert http.get(f"/api/batch/{job}", headers=key(A)).json()["results"] == mine["results"]  # unchanged


def test_a_key_is_held_to_its_quota_of_queued_documents(stack):
    sollol, http, _ = stack
    assert submit(http, QUOTA_KEY, ["1", "2", "3"]).status_code == 200
    before = sollol.batch.status()["queued"]
    r = submit(http, QUOTA_KEY, ["4", "5"])
    assert r.status_code == 429 and "quota" in r.json()["error"] and r.headers["retry-after"]
    assert sollol.batch.status()["queued"] == before  # nothing of it was stored
    assert submit(http, A, ["6", "7", "8", "9", "10"]).status_code == 200  # another key's quota is its own
    finish(sollol, {})
    assert submit(http, QUOTA_KEY, ["4", "5"]).status_code == 200  # finished documents no longer count
    sollol.update_config(batch_max_queued_docs_per_key=2)  # the default for keys without their own
    assert submit(http, A, ["11", "12", "13"]).status_code == 429


def test_finished_jobs_are_deleted_from_the_file_after_their_retention(stack):
    sollol, http, db = stack
    marker, vector = "MARKER-7f9e2c-secret-text", "[12345.678901]"
    old = submit(http, A, [marker, "other"]).json()["job_id"]
    finish(sollol, {marker: vector})
    waiting = submit(http, A, ["still waiting"]).json()["job_id"]  # not finished: never expires
    assert http.get(f"/api/batch/{old}", headers=key(A)).json()["status"] == "done"
    sollol.update_config(batch_retention_hours=0.0003)  # about a second
    wait_until(lambda: http.get(f"/api/batch/{old}", headers=key(A)).status_code == 404, timeout=20,
               what="the finished job to expire")
    assert http.get(f"/api/batch/{waiting}", headers=key(A)).json()["status"] == "queued"
    files = [p for p in (db, Path(f"{db}-wal")) if p.exists()]
    for path in files:
        data = path.read_bytes()
        assert marker.encode() not in data and b"12345.678901" not in data, path
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM docs WHERE job_id=?", (old,)).fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM docs WHERE job_id=?", (waiting,)).fetchone() == (1,)
    assert sollol.batch.purged == 1


def test_the_store_purges_only_finished_jobs_and_keeps_exactly_once(tmp_path):
    store = BatchStore(tmp_path / "q.db")
    store.open()
    try:
        done = store.add_job("m", ["a", "b"], owner="x")
        running = store.add_job("m", ["c", "d"], owner="x")
        claimed = store.claim(3, 7)
        store.complete([d.seq for d in claimed if d.job_id == done.job_id], ["[1]", "[2]"], 7)
        assert store.job(done.job_id)["status"] == "done"
        assert store.purge_finished(before=0.0) == 0  # finished after that time
        assert store.purge_finished(before=10**10) == 1
        assert store.job(done.job_id) is None and store.job(running.job_id)["in_progress"] == 1
        left = [d for d in claimed if d.job_id == running.job_id]
        assert store.complete([d.seq for d in left], ["[3]"], 7) == 1  # the running job's claim still holds
        rest = store.claim(10, 7)
        assert [d.text for d in rest] == ["d"]
        assert store.complete([d.seq for d in rest], ["[4]"], 7) == 1
        assert store.complete([d.seq for d in rest], ["[4]"], 7) == 0  # once
    finally:
        store.close()


def test_an_older_file_gains_the_owner_column(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE jobs (id TEXT PRIMARY KEY, model TEXT NOT NULL, total INTEGER NOT NULL, created REAL NOT NULL,
                               started REAL, finished REAL);
            INSERT INTO jobs VALUES ('j1', 'm', 0, 1.0, NULL, NULL);
        """)
    store = BatchStore(path)
    store.open()
    try:
        assert store.job("j1")["owner"] is None and store.job("j1", owner="x") is None
        assert store.add_job("m", ["a"], owner="x").owner == "x"
    finally:
        store.close()
