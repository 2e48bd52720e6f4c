"""kill -9 of the whole gateway mid-job, restart on the same database: every accepted document ends with
exactly one result. The gateway runs as operators run it (`sollol --no-ui`), with a real Dask LocalCluster."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from contextlib import closing
from pathlib import Path

import httpx
import psutil
import pytest

from sollol_core.sim import SimNodeSpec, sim_embedding

from helpers import EMBED_MODEL, REPO, wait_until

pytestmark = pytest.mark.timeout(120)


class Gateway:
    def __init__(self, hosts: list[str], db: Path, cwd: Path) -> None:
        args = [sys.executable, "-m", "sollol_tui.cli", "--no-ui", "--hosts", ",".join(hosts), "--port", "0",
                "--metrics-port", "0", "--batch-db", str(db), "--autobatch-interval", "0.3"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOLLOL_")}
        env["SOLLOL_AUTOBATCH_MAX_BATCH_SIZE"] = "200"
        env["PYTHONPATH"] = str(REPO)
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=cwd,
                                     env=env)
        self.log: list[str] = []
        found = threading.Event()
        self.url = ""

        def read() -> None:
            for line in self.proc.stderr:  # type: ignore[union-attr]
                self.log.append(line)
                m = re.search(r"gateway on (http://\S+)", line)
                if m and not found.is_set():
                    self.url = m.group(1)
                    found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not found.wait(30):
            self.proc.kill()
            self.proc.wait(10)
            self._close_pipe()
            pytest.fail("gateway did not start:\n" + "".join(self.log[-30:]))
        assert self.url.startswith("http://127.0.0.1:")
        self.http = httpx.Client(base_url=self.url, timeout=20, trust_env=False)

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def kill9(self) -> list[psutil.Process]:
        kids = self.children()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.http.close()
        return kids

    def _close_pipe(self) -> None:
        """Close stderr once the reader has read it to the end: the Dask workers the gateway started hold it
        too, until they have exited (closing it under a reader still blocked in read would wait on it)."""
        self._reader.join(20)
        if not self._reader.is_alive() and self.proc.stderr is not None:
            self.proc.stderr.close()

    def stop(self) -> int:
        self.http.close()
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    return self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
                    return -9
            return self.proc.returncode
        finally:
            self._close_pipe()


def done_count(gw: Gateway, job_id: str) -> int:
    return gw.http.get(f"/api/batch/{job_id}", params={"limit": 1}).json()["done"]


def states(db: Path) -> dict[int, int]:
    with closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT state, COUNT(*) FROM docs GROUP BY state").fetchall())


def gone(procs: list[psutil.Process]) -> bool:
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


def test_kill_9_mid_job_and_restart_is_exactly_once(sim_cluster, tmp_path):
    spec = dict(latency_ms=0, embed_ms_per_input=2.0, capacity=1, models=[EMBED_MODEL])
    sim = sim_cluster(SimNodeSpec(name="a", seed=1, **spec), SimNodeSpec(name="b", seed=2, **spec))
    db = tmp_path / "queue.db"
    docs1 = [f"crash doc {i}" for i in range(2000)]
    docs2 = [f"second job {i}" for i in range(300)]
    ids2 = [f"j2-{i}" for i in range(300)]
    running: list[Gateway] = []
    try:
        gw = Gateway(sim.addresses, db, tmp_path)
        running.append(gw)
        r = gw.http.post("/api/embed/batch", json={"model": EMBED_MODEL, "docs": docs1})
        assert r.status_code == 200
        job1 = r.json()["job_id"]
        wait_until(lambda: done_count(gw, job1) >= 400, timeout=40, interval=0.05, what="a first share done")
        kids = gw.kill9()
        at_kill = states(db)
        assert 400 <= at_kill.get(2, 0) < 2000 and at_kill.get(1, 0) > 0, at_kill  # killed mid-chunk
        wait_until(lambda: gone(kids), timeout=15, what="the Dask workers of the killed gateway to exit")

        # second life: accept a job, and die at once (before any of it could run)
        gw = Gateway(sim.addresses, db, tmp_path)
        running.append(gw)
        r = gw.http.post("/api/embed/batch", json={"model": EMBED_MODEL, "docs": docs2, "ids": ids2})
        assert r.status_code == 200 and r.json()["queued"] == 300
        job2 = r.json()["job_id"]
        kids = gw.kill9()
        wait_until(lambda: gone(kids), timeout=15, what="the second gateway's children to exit")

        # third life: everything finishes
        gw = Gateway(sim.addresses, db, tmp_path)
        running.append(gw)
        for job_id, total in ((job1, 2000), (job2, 300)):
            final = wait_until(lambda: (lambda s: s if s["status"] in ("done", "failed") else None)(
                gw.http.get(f"/api/batch/{job_id}", params={"limit": 1}).json()), timeout=60, interval=0.1,
                what=f"job {job_id} to finish after the restarts")
            assert (final["status"], final["done"], final["failed"], final["total"]) == ("done", total, 0, total)
        for job_id, expected in ((job1, dict((str(i), d) for i, d in enumerate(docs1))),
                                 (job2, dict(zip(ids2, docs2)))):
            lines = gw.http.get(f"/api/batch/{job_id}", params={"format": "jsonl"}).text.splitlines()
            results = [json.loads(line) for line in lines]
            assert len(results) == len(expected) == len({r["id"] for r in results})
            for res in results:
                assert res["embedding"] == sim_embedding(expected[res["id"]])
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT seq) FROM results").fetchone() == (2300, 2300)
            assert conn.execute("SELECT COUNT(*) FROM docs d LEFT JOIN results r ON r.seq = d.seq "
                                "WHERE r.seq IS NULL OR d.state != 2").fetchone() == (0,)
        status = gw.http.get("/api/batch-status").json()
        assert (status["queued"], status["in_progress"], status["done"], status["failed"]) == (0, 0, 2300, 0)
        assert gw.stop() == 0
    finally:
        for g in running:
            g.stop()
