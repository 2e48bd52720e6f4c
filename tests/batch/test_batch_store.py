"""The batch queue's SQLite store: durable on accept, exactly one result per document, crash recovery."""

from __future__ import annotations

import json
import sqlite3

import pytest

from sollol_core.batch.store import DONE, FAILED, IN_PROGRESS, QUEUED, BatchStore

TOKEN, OTHER = 11, 22


@pytest.fixture
def store(tmp_path):
    s = BatchStore(tmp_path / "q.db")
    s.open()
    yield s
    s.close()


def vec(i: int) -> str:
    return json.dumps([i + 0.5, -i / 3])


def states(path) -> dict[int, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM docs GROUP BY state").fetchall())


def test_accepted_documents_are_committed_in_wal_mode(store, tmp_path):
    job = store.add_job("m", ["a", "b", "c"], ["x", "y", "z"])
    assert job.total == 3 and job.counts == [3, 0, 0, 0] and job.status == "queued"
    other = sqlite3.connect(tmp_path / "q.db")  # another connection sees them: committed
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = other.execute("SELECT idx, doc_id, text, state FROM docs ORDER BY idx").fetchall()
    assert rows == [(0, "x", "a", QUEUED), (1, "y", "b", QUEUED), (2, "z", "c", QUEUED)]
    other.close()
    assert store.job(job.job_id)["status"] == "queued"


def test_claim_complete_writes_each_result_once(store, tmp_path):
    job = store.add_job("m", [f"d{i}" for i in range(5)])
    claimed = store.claim(3, TOKEN)
    assert [d.text for d in claimed] == ["d0", "d1", "d2"] and {d.model for d in claimed} == {"m"}
    assert store.claim(10, TOKEN)[0].text == "d3"  # the rest, not the claimed ones again
    seqs = [d.seq for d in claimed]
    assert store.complete(seqs, [vec(i) for i in range(3)], OTHER) == 0  # another claim's token: ignored
    assert store.complete(seqs, [vec(i) for i in range(3)], TOKEN) == 3
    assert store.complete(seqs, [vec(9)] * 3, TOKEN) == 0  # a late duplicate: ignored
    with sqlite3.connect(tmp_path / "q.db") as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT seq) FROM results").fetchone() == (3, 3)
    assert [(i, d, json.loads(e)) for i, d, e in store.results_page(job.job_id, 0, 10)] == \
        [(i, str(i), json.loads(vec(i))) for i in range(3)]
    info = store.job(job.job_id)
    assert (info["status"], info["queued"], info["in_progress"], info["done"]) == ("in_progress", 0, 2, 3)


def test_crash_puts_in_progress_back_and_keeps_done(tmp_path):
    path = tmp_path / "q.db"
    s = BatchStore(path)
    s.open()
    job = s.add_job("m", [f"d{i}" for i in range(6)])
    claimed = s.claim(4, TOKEN)
    s.complete([claimed[0].seq, claimed[1].seq], [vec(0), vec(1)], TOKEN)
    s.close()  # as after kill -9: two done, two in progress, two queued
    assert states(path) == {QUEUED: 2, IN_PROGRESS: 2, DONE: 2}
    s2 = BatchStore(path)
    assert s2.open() == 2
    assert states(path) == {QUEUED: 4, DONE: 2}
    assert s2.job(job.job_id)["done"] == 2 and s2.queued() == 4
    again = s2.claim(10, OTHER)
    assert sorted(d.text for d in again) == ["d2", "d3", "d4", "d5"]  # never the finished ones
    assert s2.complete([claimed[2].seq], [vec(2)], TOKEN) == 0  # the dead process's claim no longer counts
    assert s2.complete([d.seq for d in again], [vec(7)] * 4, OTHER) == 4
    info = s2.job(job.job_id)
    assert info["status"] == "done" and info["done"] == 6 and info["finished_at"] is not None
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT seq) FROM results").fetchone() == (6, 6)
    s2.close()


def test_release_counts_attempts_then_fails(store, tmp_path):
    job = store.add_job("m", ["a", "b"])
    for attempt in range(1, 3):
        claimed = store.claim(10, TOKEN)
        assert len(claimed) == 2
        requeued, failed = store.release([d.seq for d in claimed], TOKEN, count_attempt=True, max_attempts=2,
                                         error="h:1: HTTP 500: boom")
        assert (requeued, failed) == ((2, 0) if attempt == 1 else (0, 2))
    info = store.job(job.job_id)
    assert (info["status"], info["failed"], info["done"], info["queued"]) == ("failed", 2, 0, 0)
    assert store.errors(job.job_id, 10) == [("0", "h:1: HTTP 500: boom"), ("1", "h:1: HTTP 500: boom")]
    assert store.results_page(job.job_id, 0, 10) == []
    assert states(tmp_path / "q.db") == {FAILED: 2}


def test_release_without_attempt_and_release_all(store):
    store.add_job("m", ["a", "b", "c"])
    claimed = store.claim(10, TOKEN)
    assert store.release([claimed[0].seq], TOKEN) == (1, 0)
    assert store.release_all(TOKEN) == 2
    assert store.queued() == 3 and store.totals(0)[0] == [3, 0, 0, 0]
    claimed = store.claim(1, TOKEN)
    store.fail([claimed[0].seq], "refused", TOKEN)
    assert store.totals(0)[0] == [2, 0, 0, 1]


def test_results_keyset_paging_in_document_order(store):
    job = store.add_job("m", [f"d{i}" for i in range(7)], [f"id-{i}" for i in range(7)])
    claimed = store.claim(7, TOKEN)
    # finished out of order
    store.complete([claimed[5].seq, claimed[1].seq], [vec(5), vec(1)], TOKEN)
    store.complete([d.seq for d in claimed if d.seq not in (claimed[5].seq, claimed[1].seq)],
                   [vec(i) for i in (0, 2, 3, 4, 6)], TOKEN)
    first = store.results(job.job_id, -1, 3)
    assert [r[1] for r in first] == ["id-0", "id-1", "id-2"]
    rest = store.results(job.job_id, first[-1][0], 10)
    assert [r[1] for r in rest] == ["id-3", "id-4", "id-5", "id-6"]
    assert json.loads(rest[2][2]) == json.loads(vec(5))
    assert [r[1] for r in store.results_page(job.job_id, 5, 10)] == ["id-5", "id-6"]
    assert store.job(job.job_id)["status"] == "done"

