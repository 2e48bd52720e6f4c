"""Batch embedding benchmark: one command, one table. `python bench/bench_batch.py [--quick] [--no-real]`

Everything on 127.0.0.1: simulated nodes in their own process, the gateway (`sollol --no-ui`, with its
local Dask cluster) in its own process, a fresh batch database per run.

  1. documents/s of POST /api/embed/batch to the job's end, on 1, 2 and 4 simulated nodes of known capacity
     (one request at a time each, like Ollama's default; a node embedding one document in m ms serves
     1000/m documents/s). Target: >= 90 % of the nodes' summed capacity. Also: a client calling the nodes
     directly with the same chunks (2 in flight to each) for comparison, and each node's share of the chunks
     against its share of the capacity (faster nodes take more).
  2. two real Ollama servers (`real-ollama`, all-minilm) through the gateway's batch against one server
     called directly with the same chunks (32 documents per /api/embed, 2 in flight), and that one server
     through the batch (the gateway's own cost). Skipped when the tool or its install is missing. On a 2-core
     machine two servers share the same cores: correctness and overhead, not scaling, are what this shows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
from common import gateway_process, sim_process  # noqa: E402

from sollol_core.sim import SimNodeSpec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EMBED = "nomic-embed-text"
REAL_MODEL = "all-minilm"
CHUNK = 32
# name, ms per document: capacity = 1000 / ms documents/s
NODES = [("a", 2.5), ("b", 5.0), ("c", 10.0), ("d", 10.0)]


def line(*cols) -> None:
    print("  ".join(str(c) for c in cols), flush=True)


def http_json(method: str, url: str, body: Optional[dict] = None, timeout: float = 60) -> dict:
    assert url.startswith("http://127.0.0.1"), "load goes to this machine only"
    data = orjson.dumps(body) if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return orjson.loads(r.read())


def docs_for(n: int, tag: str) -> list[str]:
    return [f"{tag} document {i}: the quick brown fox jumps over the lazy dog {i % 97}" for i in range(n)]


def run_job(url: str, model: str, docs: list[str], timeout_s: float) -> tuple[float, dict]:
    """POST the documents (in requests of at most 10,000), wait for every job to finish; (seconds, status)."""
    t0 = time.perf_counter()
    jobs = []
    for i in range(0, len(docs), 10000):
        jobs.append(http_json("POST", url + "/api/embed/batch", {"model": model, "docs": docs[i:i + 10000]})["job_id"])
    deadline = time.monotonic() + timeout_s
    for job in jobs:
        while True:
            state = http_json("GET", f"{url}/api/batch/{job}?limit=1")
            if state["status"] in ("done", "failed"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job} not finished after {timeout_s} s: {state}")
            time.sleep(0.05)
        if state["status"] != "done" or state["failed"]:
            raise RuntimeError(f"job {job} ended {state['status']} with {state['failed']} failed")
    return time.perf_counter() - t0, http_json("GET", url + "/api/batch-status")


def sim_run(count: int, seconds: float) -> dict:
    nodes = NODES[:count]
    specs = [SimNodeSpec(name=n, latency_ms=0, embed_ms_per_input=ms, capacity=1, embed_dim=384, models=[EMBED])
             for n, ms in nodes]
    capacity = {n: 1000.0 / ms for n, ms in nodes}
    total_capacity = sum(capacity.values())
    n_docs = int(total_capacity * seconds)
    with tempfile.TemporaryDirectory() as tmp, sim_process(specs) as addresses, \
            gateway_process(addresses, "--batch-db", f"{tmp}/q.db", "--autobatch-interval", "1",
                            "--no-adaptive-metrics") as gw:
        run_job(gw.url, EMBED, docs_for(200, "warm-up"), 90)  # Dask starts with the first batch
        direct_s = asyncio.run(direct_embed(addresses, EMBED, docs_for(n_docs, "direct")))
        before = http_json("GET", gw.url + "/api/batch-status")["chunks_by_host"]
        elapsed, status = run_job(gw.url, EMBED, docs_for(n_docs, "bench"), seconds * 4 + 30)
        rss = gw.rss_mb()
    chunks = {a: status["chunks_by_host"].get(a, 0) - before.get(a, 0) for a in addresses}
    total_chunks = sum(chunks.values()) or 1
    shares = [(n, capacity[n] / total_capacity, chunks[a] / total_chunks) for (n, _), a in zip(nodes, addresses)]
    rate = n_docs / elapsed
    return {"nodes": count, "docs": n_docs, "capacity": total_capacity, "docs_per_s": rate,
            "direct_docs_per_s": n_docs / direct_s, "ratio": rate / total_capacity, "shares": shares, "rss_mb": rss}


# real Ollama ---------------------------------------------------------------------------------------------
def _tool() -> Path:
    explicit = os.environ.get("REAL_OLLAMA")
    return Path(explicit) if explicit else REPO.parent / "shared" / "real-ollama" / "real-ollama"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def direct_embed(addresses: list[str], model: str, docs: list[str], in_flight: int = 2) -> float:
    """The servers called directly, chunks of CHUNK documents from one shared list, `in_flight` requests at a
    time to each (what SOLLOL does by default, without it); returns seconds."""
    assert all(a.startswith("127.0.0.1:") for a in addresses)
    chunks = [docs[i:i + CHUNK] for i in range(0, len(docs), CHUNK)]
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def worker(address: str) -> None:
            while chunks:
                chunk = chunks.pop(0)
                async with session.post(f"http://{address}/api/embed", json={"model": model, "input": chunk},
                                        timeout=aiohttp.ClientTimeout(total=300)) as r:
                    body = await r.json()
                    assert r.status == 200 and len(body["embeddings"]) == len(chunk), body

        await asyncio.gather(*(worker(a) for a in addresses for _ in range(in_flight)))
    return time.perf_counter() - t0


def real_run(n_docs: int) -> Optional[dict]:
    tool, folder = _tool(), Path(os.environ.get("REAL_OLLAMA_DIR", "/tmp/ro"))
    if not (tool.is_file() and (folder / ".installed").is_file()):
        return None
    ports: list[int] = []
    try:
        for _ in range(2):
            port = _free_port()
            subprocess.run([str(tool), "start", str(folder), str(port)], check=True, capture_output=True,
                           timeout=120, stdin=subprocess.DEVNULL)
            ports.append(port)
        hosts = [f"127.0.0.1:{p}" for p in ports]
        for h in hosts:  # load the model on both
            http_json("POST", f"http://{h}/api/embed", {"model": REAL_MODEL, "input": ["warm up"]}, timeout=120)
        docs = docs_for(n_docs, "real")
        direct_s = asyncio.run(direct_embed(hosts[:1], REAL_MODEL, docs))
        with tempfile.TemporaryDirectory() as tmp, \
                gateway_process(hosts[:1], "--batch-db", f"{tmp}/q.db", "--autobatch-interval", "1") as gw:
            run_job(gw.url, REAL_MODEL, docs_for(64, "warm-up"), 180)
            one_s, _ = run_job(gw.url, REAL_MODEL, docs, 600)
        with tempfile.TemporaryDirectory() as tmp, \
                gateway_process(hosts, "--batch-db", f"{tmp}/q.db", "--autobatch-interval", "1") as gw:
            run_job(gw.url, REAL_MODEL, docs_for(64, "warm-up"), 180)
            via_s, status = run_job(gw.url, REAL_MODEL, docs, 600)
            job = status["jobs"][0]["job_id"]
            first = http_json("GET", f"{gw.url}/api/batch/{job}?limit=1")["results"][0]
            direct_vec = http_json("POST", f"http://{hosts[0]}/api/embed",
                                   {"model": REAL_MODEL, "input": [docs[0]]})["embeddings"][0]
            same = max(abs(a - b) for a, b in zip(first["embedding"], direct_vec))
        direct_after_s = asyncio.run(direct_embed(hosts[:1], REAL_MODEL, docs))  # drift on a shared machine
        return {"docs": n_docs, "direct_docs_per_s": n_docs / direct_s, "batch_docs_per_s": n_docs / via_s,
                "direct_after_docs_per_s": n_docs / direct_after_s,
                "one_docs_per_s": n_docs / one_s,
                "chunks_by_host": status["chunks_by_host"], "dim": len(first["embedding"]), "max_abs_diff": same}
    finally:
        for port in ports:
            subprocess.run([str(tool), "stop", str(folder), str(port)], capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL)


def sim_table(seconds: float) -> bool:
    ok = True
    print(f"1 simulated nodes, one request at a time each, {CHUNK} documents a chunk, 384-dim vectors")
    line(f"  {'nodes':>5} {'docs':>6} {'capacity/s':>10} {'direct/s':>8} {'docs/s':>8} {'ratio':>6}  "
         f"chunk share / capacity share")
    for count in (1, 2, 4):
        r = sim_run(count, seconds)
        good = r["ratio"] >= 0.9
        ok &= good
        shares = ", ".join(f"{n} {got:.2f}/{want:.2f}" for n, want, got in r["shares"])
        line(f"  {r['nodes']:>5} {r['docs']:>6} {r['capacity']:>10.0f} {r['direct_docs_per_s']:>8.1f} "
             f"{r['docs_per_s']:>8.1f} {r['ratio']:>6.3f}  "
             f"{shares}  (target >= 0.90) {'OK' if good else 'MISS'}  RSS {r['rss_mb']:.0f} MB")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (about 4 s of work each)")
    parser.add_argument("--no-real", action="store_true", help="skip the real Ollama comparison")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulated nodes")
    args = parser.parse_args()
    ok = True
    if not args.no_sim:
        ok &= sim_table(4.0 if args.quick else 10.0)
    if not args.no_real:
        r = real_run(320 if args.quick else 960)
        if r is None:
            print("2 real Ollama: skipped (real-ollama not installed)")
        else:
            line(f"2 real Ollama, {REAL_MODEL}, {r['docs']} documents: one server direct "
                 f"{r['direct_docs_per_s']:.1f} docs/s (again at the end: {r['direct_after_docs_per_s']:.1f}); "
                 f"that server through the batch {r['one_docs_per_s']:.1f} "
                 f"docs/s; two servers through the batch {r['batch_docs_per_s']:.1f} "
                 f"docs/s (x{r['batch_docs_per_s'] / r['direct_docs_per_s']:.2f}); chunks by host "
                 f"{r['chunks_by_host']}; {r['dim']}-dim vectors, max |batch - direct| {r['max_abs_diff']:.2e}")
    print("\nall targets met" if ok else "\nsome targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
