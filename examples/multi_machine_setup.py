"""Batch embeddings across machines: one Dask scheduler, workers where you like, gateways on other machines.

    machine A (10.0.0.1)   dask scheduler --host 10.0.0.1 --port 8786 --no-dashboard
    any machine            dask worker tcp://10.0.0.1:8786 --nthreads 8 --no-dashboard
                           (only dask is needed there, not SOLLOL; the worker must reach the Ollama hosts)
    machine B, C, ...      sollol --no-ui --hosts 10.0.0.11:11434,10.0.0.12:11434 \\
                                  --dask-scheduler tcp://10.0.0.1:8786 --batch-db /var/lib/sollol/batch.db

Each gateway keeps its own durable queue (its --batch-db file) and picks the Ollama host of every chunk
itself; the Dask workers make the calls. A Dask scheduler has no authentication of its own: whoever reaches
its port can run code on the workers. Keep it on a private network or behind a firewall, or use Dask's TLS
options (--tls-ca-file, --tls-cert, --tls-key; a tls://... address).

    python examples/multi_machine_setup.py          prints the commands above
    python examples/multi_machine_setup.py --demo   runs the whole layout on this machine (127.0.0.1 only):
                                                    two simulated Ollama nodes, a scheduler, a worker, two
                                                    gateways sharing them, and a job sent to each gateway
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Optional

PY = sys.executable
MODEL = "nomic-embed-text"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method: str, url: str, body: Optional[dict] = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


class Output:
    """A child's output lines, read in the background (so it never blocks on a full pipe)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append("")  # end of output
            self.changed.notify_all()

    def matches(self, pattern: str, count: int = 1, timeout: float = 60) -> list[re.Match]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [m for m in map(re.compile(pattern).search, self.lines) if m]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0 or (self.lines and self.lines[-1] == ""):
                    raise RuntimeError(f"{self.proc.args[:3]} did not print {pattern!r} in time")
                self.changed.wait(left)


def demo() -> int:
    procs: list[subprocess.Popen] = []

    def start(args: list[str]) -> Output:
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             text=True)
        procs.append(p)
        return Output(p)

    try:
        with tempfile.TemporaryDirectory() as tmp:
            # the Ollama hosts (simulated here)
            specs = [{"name": n, "latency_ms": 0, "embed_ms_per_input": ms, "capacity": 1, "models": [MODEL]}
                     for n, ms in (("fast", 1.0), ("slow", 3.0))]
            sim = start([PY, "-m", "sollol_core.sim", *[a for s in specs for a in ("--spec", json.dumps(s))]])
            hosts = [m.group(1) for m in sim.matches(r"^SIM \S+ (\S+)", count=2, timeout=30)]
            # machine A: the scheduler and one worker
            port = free_port()
            scheduler = f"tcp://127.0.0.1:{port}"
            start(["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])
            start(["dask", "worker", scheduler, "--host", "127.0.0.1", "--nthreads", "8", "--no-dashboard"])
            from distributed import Client

            with Client(scheduler, timeout=30) as client:
                client.wait_for_workers(1, timeout=60)
            print(f"scheduler {scheduler}, one worker with 8 threads")
            # machines B and C: two gateways on the same scheduler, each with its own queue
            gateways = []
            for name in ("b", "c"):
                gw = start([PY, "-m", "sollol_tui.cli", "--no-ui", "--hosts", ",".join(hosts), "--port", "0",
                            "--metrics-port", "0", "--dask-scheduler", scheduler,
                            "--batch-db", f"{tmp}/gateway-{name}.db", "--autobatch-interval", "1"])
                gateways.append(gw.matches(r"gateway on (http://\S+)", timeout=30)[0].group(1))
            print("gateways", ", ".join(gateways))
            jobs = []
            for i, url in enumerate(gateways):
                docs = [f"gateway {i} document {n}" for n in range(500)]
                jobs.append((url, call("POST", f"{url}/api/embed/batch", {"model": MODEL, "docs": docs})["job_id"]))
            deadline = time.monotonic() + 120
            for url, job in jobs:
                while True:
                    state = call("GET", f"{url}/api/batch/{job}?limit=2")
                    if state["status"] in ("done", "failed") or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                status = call("GET", f"{url}/api/batch-status")
                print(f"{url}: job {job} {state['status']}, {state['done']}/{state['total']} embedded, "
                      f"{state['docs_per_s']} docs/s; dask {status['dask']['state']} ({status['dask']['detail']}); "
                      f"chunks by host {status['chunks_by_host']}")
                if state["status"] != "done":
                    return 1
            return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true", help="run the layout on this machine (127.0.0.1)")
    args = parser.parse_args()
    if args.demo:
        return demo()
    print(__doc__)
    return 0


if __name__ == "__main__":  # Dask may spawn processes that import this module: nothing runs on import
    sys.exit(main())
