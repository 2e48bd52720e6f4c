"""Learned slots: a cluster whose slots nobody told SOLLOL against the same cluster told, side by side in one
run. `python bench/bench_learned_slots.py [--quick] [--before COMMIT | --no-before]`

Cluster: three simulated nodes of 300 ms a request with 1, 2 and 4 slots (OLLAMA_NUM_PARALLEL; 7 slots,
23.3 requests/s in all), and 14 closed-loop clients on /api/chat (answers read whole), each sending its next
request when the last one is answered. Every arm gets fresh nodes and a fresh gateway, in their own
processes, on 127.0.0.1.

  told     this tree, every node's num_parallel in [host_settings]
  untold   this tree, nothing configured: the slots are learned from the answers' timings
  before   the release before (a git worktree of --before, default b334434), nothing configured:
           its requests queue inside the one-slot node

For each arm: goodput (answered requests/s) and p50/p99 latency over the measurement window, which starts
after the warm-up (one minute; --quick: 15 s); for `untold`, the seconds from the first request until the
learned slots were 1, 2 and 4 and stayed so to the end (read from /api/stats every 0.25 s), and the probes
it made. Targets: untold goodput and p99 within 10% of told. Exits 0 (a measurement, not a test); the last
line lists the targets missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aiohttp  # noqa: E402
from common import REPO, gateway_process, http_json, pct, sim_process, toml_config, worktree  # noqa: E402

from sollol_core.sim import SimNodeSpec  # noqa: E402

BEFORE_COMMIT = "b334434"

SERVICE_MS = 300.0
SLOTS = (1, 2, 4)
CLIENTS = 14
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello"}], "stream": False}
MISSED: list[str] = []


def line(text: str = "") -> None:
    print(text, flush=True)


def specs() -> list[SimNodeSpec]:
    return [SimNodeSpec(name=f"slots{n}", latency_ms=SERVICE_MS, tokens=1, tokens_per_s=0, num_parallel=n,
                        seed=n, models=["llama3.2:latest"]) for n in SLOTS]


@dataclass
class Arm:
    name: str
    goodput: float = 0.0
    p50: float = float("nan")
    p99: float = float("nan")
    errors: int = 0
    answered: int = 0
    learned_s: Optional[float] = None  # untold: seconds until the learned slots were right for good
    learned: dict[str, Optional[int]] = field(default_factory=dict)
    probes: int = 0
    probes_failed: int = 0


async def load(url: str, seconds: float) -> list[tuple[float, float, bool]]:
    """CLIENTS closed-loop clients for `seconds`: (start offset s, latency ms, ok) per request."""
    assert url.startswith("http://127.0.0.1"), "load goes to this machine only"
    payload = json.dumps(CHAT).encode()
    out: list[tuple[float, float, bool]] = []
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as session:
        async def client() -> None:
            while time.perf_counter() - t0 < seconds:
                s = time.perf_counter()
                try:
                    async with session.post(url, data=payload, headers={"Content-Type": "application/json"},
                                            timeout=aiohttp.ClientTimeout(total=60)) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                out.append((s - t0, (time.perf_counter() - s) * 1000, ok))

        await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return out


class Watch:
    """Reads the learned slots from /api/stats every 0.25 s while the load runs."""

    def __init__(self, url: str, nodes: list[str]) -> None:
        self.url, self.truth = url, dict(zip(nodes, SLOTS))
        self.right_since: Optional[float] = None
        self.stop = threading.Event()
        self.t0 = time.perf_counter()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def learned(self) -> tuple[dict[str, Optional[int]], int, int]:
        stats = http_json("GET", self.url + "/api/stats", timeout=10)
        slots: dict[str, Optional[int]] = {}
        probes = failed = 0
        for h in stats["hosts"]:
            rows = h.get("slot_learning") or []
            slots[h["host"]] = next((r["slots"] for r in rows if r.get("applies")), None)
            probes += sum(r.get("probes", 0) for r in rows)
            failed += sum(r.get("probes_failed", 0) for r in rows)
        return slots, probes, failed

    def _run(self) -> None:
        while not self.stop.wait(0.25):
            try:
                slots, _, _ = self.learned()
            except OSError:
                continue
            right = all(slots.get(a) == n for a, n in self.truth.items())
            if right and self.right_since is None:
                self.right_since = time.perf_counter() - self.t0
            elif not right:
                self.right_since = None


def run_arm(name: str, warm_s: float, measure_s: float, *, told: bool, root: str, watch: bool) -> Arm:
    arm = Arm(name)
    with sim_process(specs()) as nodes, tempfile.TemporaryDirectory() as tmp:
        args: list[str] = []
        if told:
            settings = {a: {"num_parallel": n} for a, n in zip(nodes, SLOTS)}
            args += ["--config", toml_config(f"{tmp}/sollol.toml", host_settings=settings)]
        with gateway_process(nodes, *args, root=root) as gw:
            w = Watch(gw.url, nodes) if watch else None
            if w is not None:
                w.t0 = time.perf_counter()
                w.thread.start()
            answers = asyncio.run(load(gw.url + "/api/chat", warm_s + measure_s))
            if w is not None:
                w.stop.set()
                w.thread.join(5)
                arm.learned_s = w.right_since
                arm.learned, arm.probes, arm.probes_failed = w.learned()
    window = [a for a in answers if a[0] >= warm_s]
    ok = [lat for _, lat, good in window if good]
    arm.answered, arm.errors = len(ok), sum(1 for a in window if not a[2])
    arm.goodput = len(ok) / measure_s
    arm.p50, arm.p99 = pct(ok, 50), pct(ok, 99)
    return arm


def verdict(ok: bool, what: str) -> str:
    if not ok:
        MISSED.append(what)
    return "OK" if ok else "MISS"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="15 s warm-up, 10 s measured (a smoke run)")
    ap.add_argument("--before", default=BEFORE_COMMIT,
                    help=f"commit of the release before (default {BEFORE_COMMIT}, the release before learned slots)")
    ap.add_argument("--before-root", default=None, help="a source tree of the release before to run instead "
                                                        "of a worktree of --before")
    ap.add_argument("--no-before", action="store_true", help="leave the release before out")
    opts = ap.parse_args()
    warm_s, measure_s = (15.0, 10.0) if opts.quick else (60.0, 60.0)
    os.chdir(REPO)  # the simulated nodes run from this tree
    line(f"cluster: 3 nodes x {SERVICE_MS:.0f} ms, slots {'/'.join(map(str, SLOTS))} "
         f"({sum(SLOTS) * 1000 / SERVICE_MS:.1f} requests/s), {CLIENTS} closed-loop clients; "
         f"warm-up {warm_s:.0f} s, measured {measure_s:.0f} s")
    arms = [run_arm("told", warm_s, measure_s, told=True, root=REPO, watch=False),
            run_arm("untold", warm_s, measure_s, told=False, root=REPO, watch=True)]
    if opts.before_root:
        arms.append(run_arm("before", warm_s, measure_s, told=False, root=opts.before_root, watch=False))
    elif not opts.no_before:
        commit = opts.before
        arms.append(run_arm(f"before ({commit[:7]})", warm_s, measure_s, told=False, root=worktree(commit),
                            watch=False))
    told = arms[0]
    line(f"{'arm':<18}{'goodput/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'goodput×':>10}{'p99×':>7}")
    for a in arms:
        line(f"{a.name:<18}{a.goodput:>10.2f}{a.p50:>9.0f}{a.p99:>9.0f}{a.errors:>8}"
             f"{a.goodput / told.goodput:>10.2f}{a.p99 / told.p99:>7.2f}")
    untold = arms[1]
    took = "never" if untold.learned_s is None else f"{untold.learned_s:.1f} s"
    line(f"untold learned {', '.join(str(v) for v in untold.learned.values())} (true {'/'.join(map(str, SLOTS))})"
         f" after {took}; {untold.probes} probes, {untold.probes_failed} waited")
    line(f"untold goodput within 10% of told: {verdict(untold.goodput >= 0.9 * told.goodput, 'goodput')}; "
         f"p99 within 10%: {verdict(untold.p99 <= 1.1 * told.p99, 'p99')}; "
         f"learned right: {verdict(untold.learned_s is not None, 'learned')}")
    line(f"targets missed: {', '.join(MISSED) if MISSED else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
