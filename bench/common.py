"""Shared pieces of the benchmarks: simulated nodes and the gateway in their own processes, and a
closed-loop load generator. Everything listens on and sends to 127.0.0.1 only; every load is bounded
in count and in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, Optional

import aiohttp
import psutil

from sollol_core.sim import SimNodeSpec

PY = sys.executable


@contextmanager
def sim_process(specs: list[SimNodeSpec]) -> Iterator[list[str]]:
    """Simulated nodes in a separate process (so they do not share a core or the GIL with the gateway)."""
    args = [PY, "-m", "sollol_core.sim"]
    for spec in specs:
        args += ["--spec", json.dumps(asdict(spec))]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    addresses = []
    try:
        while len(addresses) < len(specs):
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("simulated nodes did not start")
            if line.startswith("SIM "):
                addresses.append(line.split()[2])
        yield addresses
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Gateway:
    url: str
    proc: subprocess.Popen
    started_s: float  # seconds from process start to the first answered /api/health

    def rss_mb(self) -> float:
        p = psutil.Process(self.proc.pid)
        procs = [p] + p.children(recursive=True)
        total = 0
        for q in procs:
            try:
                total += q.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20


@contextmanager
def gateway_process(hosts: list[str], *extra: str, env: Optional[dict] = None) -> Iterator[Gateway]:
    """`sollol --no-ui` in its own process, as an operator runs it."""
    import urllib.request

    args = [PY, "-m", "sollol_tui.cli", "--no-ui", "--hosts", ",".join(hosts), "--port", "0",
            "--metrics-port", "0", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env or os.environ.copy(),
                            cwd="/tmp")
    url = None
    try:
        deadline = time.time() + 60
        while url is None and time.time() < deadline:
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError("gateway exited before it listened")
            m = re.search(r"gateway on (http://\S+)", line)
            if m:
                url = m.group(1)
        if url is None:
            raise RuntimeError("gateway did not start in 60 s")
        while True:
            try:
                urllib.request.urlopen(url + "/api/health", timeout=1).read()
                break
            except Exception:
                time.sleep(0.005)
        started = time.perf_counter() - t0
        # keep draining stderr so the gateway never blocks on a full pipe
        import threading

        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        yield Gateway(url, proc, started)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class LoadResult:
    latencies_ms: list[float]
    errors: int
    seconds: float

    @property
    def count(self) -> int:
        return len(self.latencies_ms) + self.errors

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(round(q / 100 * (len(data) - 1))))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


async def closed_loop(url: str, body: dict, concurrency: int, count: Optional[int] = None,
                      duration_s: Optional[float] = None, max_duration_s: float = 120.0) -> LoadResult:
    """`concurrency` clients, each sending its next request when the last one is answered.
    Stops after `count` requests or `duration_s` seconds, whichever is set (hard limit max_duration_s)."""
    assert url.startswith("http://127.0.0.1"), "load goes to this machine only"
    payload = json.dumps(body).encode()
    latencies: list[float] = []
    errors = 0
    sent = 0
    t0 = time.perf_counter()
    limit = duration_s if duration_s is not None else max_duration_s
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client() -> None:
            nonlocal errors, sent
            while time.perf_counter() - t0 < min(limit, max_duration_s):
                if count is not None and sent >= count:
                    return
                sent += 1
                s = time.perf_counter()
                try:
                    async with session.post(url, data=payload, headers={"Content-Type": "application/json"},
                                            timeout=aiohttp.ClientTimeout(total=60)) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - s) * 1000)
                else:
                    errors += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return LoadResult(latencies, errors, time.perf_counter() - t0)


def run(coro):
    return asyncio.run(coro)
