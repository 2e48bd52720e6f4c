"""The durable batch queue: one SQLite file in WAL mode.

    jobs     one row per POST /api/embed/batch: model, size, when it was created, started, finished, and
             its owner (the API key's name that submitted it; NULL without keys)
    docs     one row per document, in arrival order (seq): its job, index and id in the job, the text,
             a state (queued / in_progress / done / failed), the claim that holds it, attempts, error
    results  one row per finished document, keyed by the document's seq (the primary key), so a document
             can have one result and no more

Exactly once: a document is taken by `claim`, which marks it in_progress under the claim token of this
process. `complete` writes the results of a chunk and marks its documents done in one transaction, and
only for documents still in_progress under that token. After a crash, `open` puts documents left
in_progress back to queued; those whose results were committed are done already and are not taken again.

Retention: `purge_finished` deletes the jobs that finished before a given time, with their documents and
results, in one transaction. Nothing of theirs can be claimed any more, so exactly once is untouched; the
connection runs with secure_delete, so the deleted texts and vectors are overwritten in the file, and a
checkpoint then empties the WAL of the pages that held them.

Quotas: `add_job` refuses a job that would take its owner over `max_queued` documents waiting or in
progress (BatchQuotaExceeded); the check and the insert run in the one database thread, so two jobs of
one owner cannot both slip under it.

All methods are synchronous and must run in one thread (`AsyncStore` gives each call to its own thread).
The counters per job are kept in memory as well, so readers (the dashboard, 4 times a second) never touch
the database; they are updated after each commit from the rows that changed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import BatchQuotaExceeded

QUEUED, IN_PROGRESS, DONE, FAILED = 0, 1, 2, 3
RATE_WINDOW_S = 10.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id       TEXT PRIMARY KEY,
    model    TEXT NOT NULL,
    total    INTEGER NOT NULL,
    created  REAL NOT NULL,
    started  REAL,
    finished REAL,
    owner    TEXT
);
CREATE TABLE IF NOT EXISTS docs (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id   TEXT NOT NULL REFERENCES jobs(id),
    idx      INTEGER NOT NULL,
    doc_id   TEXT NOT NULL,
    text     TEXT NOT NULL,
    state    INTEGER NOT NULL DEFAULT 0,
    claim    INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    error    TEXT,
    UNIQUE (job_id, idx),
    UNIQUE (job_id, doc_id)
);
CREATE INDEX IF NOT EXISTS docs_by_state ON docs (state, seq);
CREATE TABLE IF NOT EXISTS results (
    seq       INTEGER PRIMARY KEY REFERENCES docs(seq),
    embedding TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class ClaimedDoc:
    seq: int
    job_id: str
    model: str
    text: str


@dataclass
class JobInfo:
    """A job as kept in memory: the database's counts, mirrored after every commit."""

    job_id: str
    model: str
    total: int
    created: float
    started: Optional[float] = None
    finished: Optional[float] = None
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # by state
    done_events: deque[tuple[float, int]] = field(default_factory=deque)  # (time, n) this session, for the rate
    owner: Optional[str] = None  # the API key's name that submitted it (None without keys)

    @property
    def unfinished(self) -> int:
        return self.counts[QUEUED] + self.counts[IN_PROGRESS]

    @property
    def status(self) -> str:
        queued, in_progress, done, failed = self.counts
        if queued + in_progress == 0:
            return "failed" if failed else "done"
        if in_progress or done or failed:
            return "in_progress"
        return "queued"

    def docs_per_s(self, now: float) -> float:
        """Over the last RATE_WINDOW_S while running; over the whole run once finished."""
        if self.finished is not None:
            if self.started is None or self.counts[DONE] == 0:
                return 0.0
            return float(self.counts[DONE] / max(self.finished - self.started, 1e-3))
        recent = sum(n for t, n in self.done_events if t >= now - RATE_WINDOW_S)
        if not recent:
            return 0.0
        span = min(RATE_WINDOW_S, max(now - (self.started or now), 1e-3))
        return recent / span

    def as_dict(self, now: float) -> dict[str, Any]:
        queued, in_progress, done, failed = self.counts
        return {"job_id": self.job_id, "model": self.model, "status": self.status, "total": self.total,
                "queued": queued, "in_progress": in_progress, "done": done, "failed": failed,
                "docs_per_s": round(self.docs_per_s(now), 2), "created_at": self.created,
                "started_at": self.started, "finished_at": self.finished, "owner": self.owner}


class BatchStore:
    """The queue in one SQLite file. Not thread-safe by itself: one thread calls it (see AsyncStore)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: Optional[sqlite3.Connection] = None
        self._lock = threading.Lock()  # guards `jobs` for readers in other threads
        self.jobs: dict[str, JobInfo] = {}
        self.recovered = 0

    # lifecycle ------------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def open(self) -> int:
        """Open (creating it when needed), put documents a crash left in_progress back in the queue,
        and load the counters. Returns how many documents went back to the queue."""
        if self._conn is not None:
            return 0
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # accepted means durable, power loss included
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA secure_delete=ON")  # what retention deletes is overwritten, not left in free pages
            conn.executescript(SCHEMA)
            if "owner" not in {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}:
                conn.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")  # a file from before owners
            with _tx(conn):
                recovered = conn.execute("UPDATE docs SET state=?, claim=NULL WHERE state=?",
                                         (QUEUED, IN_PROGRESS)).rowcount
            jobs: dict[str, JobInfo] = {}
            for job_id, model, total, created, started, finished, owner in conn.execute(
                    "SELECT id, model, total, created, started, finished, owner FROM jobs ORDER BY created"):
                jobs[job_id] = JobInfo(job_id, model, total, created, started, finished, owner=owner)
            for job_id, state, n in conn.execute("SELECT job_id, state, COUNT(*) FROM docs GROUP BY job_id, state"):
                if job_id in jobs:
                    jobs[job_id].counts[state] = n
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        with self._lock:
            self.jobs = jobs
        self.recovered = recovered
        return recovered

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("batch store is not open")
        return self._conn

    # writing --------------------------------------------------------------------------------------
    def add_job(self, model: str, texts: Sequence[str], ids: Optional[Sequence[str]] = None, *,
                owner: Optional[str] = None, max_queued: Optional[int] = None) -> JobInfo:
        """Store a job and its documents in one transaction (committed and synced when this returns).
        With `max_queued`, BatchQuotaExceeded when the owner's documents waiting or in progress would go
        over it."""
        if max_queued is not None:
            queued = self.unfinished(owner)
            if queued + len(texts) > max_queued:
                raise BatchQuotaExceeded(queued, len(texts), max_queued)
        job_id = uuid.uuid4().hex
        now = time.time()
        doc_ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
        conn = self.conn
        with _tx(conn):
            conn.execute("INSERT INTO jobs (id, model, total, created, owner) VALUES (?, ?, ?, ?, ?)",
                         (job_id, model, len(texts), now, owner))
            conn.executemany("INSERT INTO docs (job_id, idx, doc_id, text) VALUES (?, ?, ?, ?)",
                             ((job_id, i, doc_ids[i], t) for i, t in enumerate(texts)))
        info = JobInfo(job_id, model, len(texts), now, counts=[len(texts), 0, 0, 0], owner=owner)
        with self._lock:
            self.jobs[job_id] = info
        return info

    def claim(self, limit: int, token: int) -> list[ClaimedDoc]:
        """Up to `limit` queued documents, oldest first, marked in_progress under `token`."""
        conn = self.conn
        now = time.time()
        with _tx(conn):
            rows = conn.execute(
                "SELECT d.seq, d.job_id, j.model, d.text FROM docs d JOIN jobs j ON j.id = d.job_id "
                "WHERE d.state = ? ORDER BY d.seq LIMIT ?", (QUEUED, limit)).fetchall()
            if not rows:
                return []
            seqs = [r[0] for r in rows]
            for part in _parts(seqs):
                conn.execute(f"UPDATE docs SET state=?, claim=? WHERE seq IN ({_marks(part)})",
                             (IN_PROGRESS, token, *part))
            started = {r[1] for r in rows if self.jobs.get(r[1]) and self.jobs[r[1]].started is None}
            for job_id in started:
                conn.execute("UPDATE jobs SET started=? WHERE id=? AND started IS NULL", (now, job_id))
        with self._lock:
            for r in rows:
                info = self.jobs.get(r[1])
                if info is not None:
                    info.counts[QUEUED] -= 1
                    info.counts[IN_PROGRESS] += 1
            for job_id in started:
                self.jobs[job_id].started = now
        return [ClaimedDoc(seq, job_id, model, text) for seq, job_id, model, text in rows]

    def complete(self, seqs: Sequence[int], embeddings: Sequence[str], token: int) -> int:
        """Write results (JSON arrays) for the documents of one chunk and mark them done, atomically.
        Documents no longer in_progress under `token` are left alone. Returns how many were written."""
        if len(seqs) != len(embeddings):
            raise ValueError("one embedding per document")
        conn = self.conn
        by_seq = dict(zip(seqs, embeddings))
        with _tx(conn):
            held = self._held(seqs, token)
            if held:
                conn.executemany("INSERT INTO results (seq, embedding) VALUES (?, ?)",
                                 ((seq, by_seq[seq]) for seq in held))
                for part in _parts(list(held)):
                    conn.execute(f"UPDATE docs SET state=?, claim=NULL WHERE seq IN ({_marks(part)})",
                                 (DONE, *part))
                finished = self._finish_jobs(held, IN_PROGRESS, DONE)
        if held:
            self._apply(held, IN_PROGRESS, DONE, finished, done=True)
        return len(held)

    def fail(self, seqs: Sequence[int], error: str, token: int) -> int:
        """Mark documents failed for good (a host rejected them), with the reason."""
        conn = self.conn
        with _tx(conn):
            held = self._held(seqs, token)
            for part in _parts(list(held)):
                conn.execute(f"UPDATE docs SET state=?, claim=NULL, error=? WHERE seq IN ({_marks(part)})",
                             (FAILED, error, *part))
            finished = self._finish_jobs(held, IN_PROGRESS, FAILED) if held else {}
        if held:
            self._apply(held, IN_PROGRESS, FAILED, finished)
        return len(held)

    def release(self, seqs: Sequence[int], token: int, *, count_attempt: bool = False,
                max_attempts: int = 3, error: Optional[str] = None) -> tuple[int, int]:
        """Back to the queue. With count_attempt, one more attempt is counted, and documents that reach
        max_attempts are marked failed with `error`. Returns (requeued, failed)."""
        conn = self.conn
        with _tx(conn):
            held = self._held(seqs, token)
            if not held:
                return 0, 0
            failed: dict[int, str] = {}
            if count_attempt:
                for part in _parts(list(held)):
                    conn.execute(f"UPDATE docs SET attempts = attempts + 1, error=? WHERE seq IN ({_marks(part)})",
                                 (error, *part))
                    for seq, attempts in conn.execute(
                            f"SELECT seq, attempts FROM docs WHERE seq IN ({_marks(part)})", part):
                        if attempts >= max_attempts:
                            failed[seq] = held[seq]
            requeue = {s: j for s, j in held.items() if s not in failed}
            for part in _parts(list(requeue)):
                conn.execute(f"UPDATE docs SET state=?, claim=NULL WHERE seq IN ({_marks(part)})", (QUEUED, *part))
            for part in _parts(list(failed)):
                conn.execute(f"UPDATE docs SET state=?, claim=NULL WHERE seq IN ({_marks(part)})", (FAILED, *part))
            finished = self._finish_jobs(failed, IN_PROGRESS, FAILED, also_leaving=requeue) if failed else {}
        self._apply(requeue, IN_PROGRESS, QUEUED, {})
        if failed:
            self._apply(failed, IN_PROGRESS, FAILED, finished)
        return len(requeue), len(failed)

    def release_all(self, token: int) -> int:
        """Every document this claim token holds goes back to the queue (on a clean stop)."""
        conn = self.conn
        with _tx(conn):
            rows = conn.execute("SELECT seq, job_id FROM docs WHERE state=? AND claim=?",
                                (IN_PROGRESS, token)).fetchall()
            conn.execute("UPDATE docs SET state=?, claim=NULL WHERE state=? AND claim=?", (QUEUED, IN_PROGRESS, token))
        self._apply(dict(rows), IN_PROGRESS, QUEUED, {})
        return len(rows)

    def purge_finished(self, before: float) -> int:
        """Delete the jobs that finished before `before` (time.time()), their documents and results, then
        checkpoint the WAL, so their texts and vectors are gone from the files. Returns the jobs deleted."""
        conn = self.conn
        with _tx(conn):
            ids = [row[0] for row in conn.execute(
                "SELECT id FROM jobs WHERE finished IS NOT NULL AND finished < ?", (before,))]
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                marks = ",".join("?" * len(part))
                conn.execute(f"DELETE FROM results WHERE seq IN (SELECT seq FROM docs WHERE job_id IN ({marks}))",
                             part)
                conn.execute(f"DELETE FROM docs WHERE job_id IN ({marks})", part)
                conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", part)
        if ids:
            with self._lock:
                for job_id in ids:
                    self.jobs.pop(job_id, None)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(ids)

    # helpers for the writers ----------------------------------------------------------------------
    def _held(self, seqs: Sequence[int], token: int) -> dict[int, str]:
        """seq -> job_id of those documents still in_progress under `token`."""
        held: dict[int, str] = {}
        for part in _parts(list(seqs)):
            for seq, job_id in self.conn.execute(
                    f"SELECT seq, job_id FROM docs WHERE state=? AND claim=? AND seq IN ({_marks(part)})",
                    (IN_PROGRESS, token, *part)):
                held[seq] = job_id
        return held

    def _finish_jobs(self, moved: dict[int, str], src: int, dst: int,
                     also_leaving: Optional[dict[int, str]] = None) -> dict[str, float]:
        """Jobs that this change leaves with nothing queued or in progress: stamp them finished."""
        leaving: dict[str, int] = {}
        for job_id in moved.values():
            leaving[job_id] = leaving.get(job_id, 0) + 1
        back: dict[str, int] = {}
        for job_id in (also_leaving or {}).values():
            back[job_id] = back.get(job_id, 0) + 1
        now = time.time()
        finished = {}
        with self._lock:
            for job_id, n in leaving.items():
                info = self.jobs.get(job_id)
                if info is None:
                    continue
                returning = back.get(job_id, 0)
                queued_after = info.counts[QUEUED] + returning
                in_progress_after = info.counts[IN_PROGRESS] - n - returning
                if queued_after == 0 and in_progress_after == 0:
                    finished[job_id] = now
        for job_id, t in finished.items():
            self.conn.execute("UPDATE jobs SET finished=? WHERE id=?", (t, job_id))
        return finished

    def _apply(self, moved: dict[int, str], src: int, dst: int, finished: dict[str, float],
               done: bool = False) -> None:
        now = time.time()
        per_job: dict[str, int] = {}
        for job_id in moved.values():
            per_job[job_id] = per_job.get(job_id, 0) + 1
        with self._lock:
            for job_id, n in per_job.items():
                info = self.jobs.get(job_id)
                if info is None:
                    continue
                info.counts[src] -= n
                info.counts[dst] += n
                if done:
                    events = info.done_events
                    events.append((now, n))
                    while events[0][0] < now - RATE_WINDOW_S:
                        events.popleft()
                if job_id in finished:
                    info.finished = finished[job_id]

    # reading --------------------------------------------------------------------------------------
    def results(self, job_id: str, after_idx: int, limit: int) -> list[tuple[int, str, str]]:
        """(idx, doc id, embedding JSON) of finished documents with idx > after_idx, in document order."""
        return self.conn.execute(
            "SELECT d.idx, d.doc_id, r.embedding FROM docs d JOIN results r ON r.seq = d.seq "
            "WHERE d.job_id = ? AND d.idx > ? ORDER BY d.idx LIMIT ?", (job_id, after_idx, limit)).fetchall()

    def results_page(self, job_id: str, offset: int, limit: int) -> list[tuple[int, str, str]]:
        """The same, by position among the finished documents."""
        return self.conn.execute(
            "SELECT d.idx, d.doc_id, r.embedding FROM docs d JOIN results r ON r.seq = d.seq "
            "WHERE d.job_id = ? ORDER BY d.idx LIMIT ? OFFSET ?", (job_id, limit, offset)).fetchall()

    def errors(self, job_id: str, limit: int) -> list[tuple[str, str]]:
        return self.conn.execute(
            "SELECT doc_id, COALESCE(error, 'failed') FROM docs WHERE job_id = ? AND state = ? ORDER BY idx LIMIT ?",
            (job_id, FAILED, limit)).fetchall()

    # reading the counters (any thread) -------------------------------------------------------------
    def queued(self) -> int:
        with self._lock:
            return sum(j.counts[QUEUED] for j in self.jobs.values())

    def unfinished(self, owner: Optional[str]) -> int:
        """Documents of the owner's jobs waiting or in progress."""
        with self._lock:
            return sum(j.unfinished for j in self.jobs.values() if j.owner == owner)

    def job(self, job_id: str, owner: Optional[str] = None) -> Optional[dict[str, Any]]:
        """One job as a dict (JobInfo.as_dict), None when unknown, or (with `owner`) when not the owner's."""
        now = time.time()
        with self._lock:
            info = self.jobs.get(job_id)
            if info is None or (owner is not None and info.owner != owner):
                return None
            return info.as_dict(now)

    def totals(self, last: int = 100, owner: Optional[str] = None) -> tuple[list[int], float, int, list[dict[str, Any]]]:
        """(counts by state over every job, docs/s of the running jobs, number of jobs, the newest `last`
        jobs as dicts, newest first); with `owner`, over that owner's jobs only."""
        now = time.time()
        with self._lock:
            totals = [0, 0, 0, 0]
            rate = 0.0
            jobs = [j for j in self.jobs.values() if owner is None or j.owner == owner]
            for j in jobs:
                for i in range(4):
                    totals[i] += j.counts[i]
                if j.finished is None and j.done_events:
                    rate += j.docs_per_s(now)
            newest = [j.as_dict(now) for j in reversed(jobs[-last:])] if last else []
        return totals, rate, len(jobs), newest


class _tx:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an error (the connection is in autocommit mode)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _parts(seqs: list[int], size: int = 500) -> list[list[int]]:
    return [seqs[i:i + size] for i in range(0, len(seqs), size)]


def _marks(part: list[int]) -> str:
    return ",".join("?" * len(part))
