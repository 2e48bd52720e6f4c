"""Dashboard under load: UI-thread CPU and key latency while the gateway serves a steady request rate.

    python bench/bench_tui.py                      # 500 req/s for 20 s, app on a pseudo-terminal, 120x40
    python bench/bench_tui.py --rate 200 --duration 10 --size 80x24
    python bench/bench_tui.py --headless           # Textual's headless driver instead of a pseudo-terminal

What runs where:
  * simulated Ollama nodes: a child process (`python -m sollol_core.sim`), on 127.0.0.1;
  * load generator: a child process (this file with --loadgen), sending only to the gateway on 127.0.0.1,
    at most rate × duration requests, and never longer than duration + 10 s;
  * this process: the SOLLOL core thread (gateway) and the dashboard in the main thread. By default the
    app runs with Textual's real Linux driver on a pseudo-terminal, so parsing keys, rendering frames and
    writing escape sequences all count; a reader thread drains the terminal like a terminal emulator would.

Reported: achieved request rate, records delivered to the UI, UI-thread CPU % (time.thread_time sampled in
the UI thread over the load window), core-thread and process CPU %, event-loop lag of a 100 ms timer,
key-press latency (key written to the terminal -> the bound action runs) and the screen's bytes/s.
Results also go to --json PATH when given.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import gc
import json
import logging
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# --- load generator (child process) ---------------------------------------------------------------------
async def _loadgen(url: str, rate: float, duration: float, concurrency: int) -> dict[str, Any]:
    import aiohttp

    if urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the load generator only sends to 127.0.0.1")
    total = int(rate * duration)
    sem = asyncio.Semaphore(concurrency)
    counts = {"ok": 0, "error": 0, "skipped": 0}
    body = {"model": "llama3.2", "prompt": "hi", "stream": False}
    connector = aiohttp.TCPConnector(limit=concurrency)
    start = time.monotonic()
    hard_stop = start + duration + 10

    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        async def one() -> None:
            try:
                async with session.post(f"{url}/api/generate", json=body) as r:
                    await r.read()
                    counts["ok" if r.status == 200 else "error"] += 1
            except Exception:  # noqa: BLE001 - counted
                counts["error"] += 1
            finally:
                sem.release()

        tasks = []
        for i in range(total):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() > hard_stop:
                counts["skipped"] += total - i
                break
            await sem.acquire()
            tasks.append(asyncio.create_task(one()))
        await asyncio.wait(tasks, timeout=max(1.0, hard_stop - time.monotonic())) if tasks else None
    counts["seconds"] = round(time.monotonic() - start, 2)
    return counts


# --- simulated nodes (child process) --------------------------------------------------------------------
def start_sim(nodes: int) -> tuple[subprocess.Popen, list[str]]:
    spec = {"latency_ms": 5, "capacity": 64, "tokens": 4, "tokens_per_s": 0}
    args = [sys.executable, "-m", "sollol_core.sim"]
    for i in range(nodes):
        args += ["--spec", json.dumps({**spec, "name": f"bench{i}", "seed": i})]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    addresses = []
    assert proc.stdout is not None
    while len(addresses) < nodes:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("simulated nodes did not start")
        if line.startswith("SIM "):
            addresses.append(line.split()[2])
    return proc, addresses


# --- pseudo-terminal ------------------------------------------------------------------------------------
class Pty:
    """Points sys.__stdin__/__stdout__/__stderr__ at a pseudo-terminal, so Textual's driver uses it."""

    def __init__(self, cols: int, rows: int) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.environ.update(COLUMNS=str(cols), LINES=str(rows), TERM="xterm-256color")
        self.bytes_out = 0
        self._saved = (sys.__stdin__, sys.__stdout__, sys.__stderr__)
        self._files = [open(os.dup(self.slave), mode, encoding="utf-8", closefd=True)
                       for mode in ("r", "w", "w")]
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = self._files  # type: ignore[misc]
        threading.Thread(target=self._drain, name="bench-terminal", daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            self.bytes_out += len(chunk)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def restore(self) -> None:
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = self._saved  # type: ignore[misc]


# --- the run --------------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def make_app_class() -> type:
    from sollol_tui.app import SollolApp

    class BenchApp(SollolApp):
        """Records when the strategy key's action runs, the UI thread's CPU time and the loop's lag."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.action_times: list[float] = []
            self.cpu_samples: list[tuple[float, float]] = []  # (perf_counter, thread_time) in the UI thread
            self.lags: list[float] = []
            self._expected = 0.0

        def on_mount(self) -> None:  # type: ignore[override]
            # Textual runs SollolApp.on_mount too (handlers of every class in the MRO are called)
            self.set_interval(0.1, self._sample)
            self._expected = time.perf_counter() + 0.1

        def _sample(self) -> None:
            now = time.perf_counter()
            self.lags.append(max(0.0, now - self._expected))
            self._expected = now + 0.1
            self.cpu_samples.append((now, time.thread_time()))

        def action_cycle_strategy(self) -> None:
            self.action_times.append(time.monotonic())
            super().action_cycle_strategy()

    return BenchApp


class GcPauses:
    """Wall time of every garbage collection, with the thread that ran it (a collection stops all threads)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float, int]] = []  # (end perf_counter, ms, generation)
        self._start: dict[int, float] = {}
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._start[threading.get_ident()] = now
        else:
            began = self._start.pop(threading.get_ident(), now)
            self.pauses.append((now, 1000 * (now - began), info["generation"]))

    def between(self, t0: float, t1: float) -> dict[str, Any]:
        inside = [p for p in self.pauses if t0 <= p[0] <= t1]
        full = [p[1] for p in inside if p[2] == 2]
        return {"collections": len(inside), "full_collections": len(full),
                "longest_ms": round(max((p[1] for p in inside), default=0.0), 1),
                "total_ms": round(sum(p[1] for p in inside), 1)}


def cpu_between(samples: list[tuple[float, float]], t0: float, t1: float) -> float:
    inside = [s for s in samples if t0 <= s[0] <= t1]
    if len(inside) < 2:
        return float("nan")
    (a_wall, a_cpu), (b_wall, b_cpu) = inside[0], inside[-1]
    return 100.0 * (b_cpu - a_cpu) / (b_wall - a_wall)


def thread_cpu(native_id: Optional[int]) -> float:
    import psutil

    for t in psutil.Process().threads():
        if t.id == native_id:
            return t.user_time + t.system_time
    return 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from sollol_core import SOLLOL, SollolConfig

    cols, rows = (int(v) for v in args.size.lower().split("x"))
    workdir = Path(tempfile.mkdtemp(prefix="sollol-bench-"))
    logging.basicConfig(level=logging.INFO, filename=str(workdir / "sollol.log"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiohttp.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sim, addresses = start_sim(args.nodes)
    config = SollolConfig(hosts=addresses, gateway_port=0, metrics_enabled=False, ui_refresh_hz=args.hz,
                          log_file=str(workdir / "sollol.log"), batch_db=str(workdir / "batch.db"),
                          shutdown_grace=2)
    sollol = SOLLOL(config).start()
    result: dict[str, Any] = {}
    gc_pauses = GcPauses()
    pty = None if args.headless else Pty(cols, rows)
    app = make_app_class()(sollol, save_path=workdir / "sollol.toml", freeze_gc=not args.no_freeze_gc)
    key_writes: list[float] = []

    def control() -> None:
        try:
            while not app.is_running or not app.ticks:
                time.sleep(0.05)
            time.sleep(1.0)
            core_id = sollol._thread.native_id if sollol._thread else None
            proc = psutil.Process()
            loadgen = subprocess.Popen(
                [sys.executable, __file__, "--loadgen", sollol.gateway_url, "--rate", str(args.rate),
                 "--duration", str(args.duration), "--concurrency", str(args.concurrency)],
                stdout=subprocess.PIPE, text=True, cwd=ROOT)
            time.sleep(min(3.0, args.duration / 4))  # ramp up
            t0, req0, fed0 = time.perf_counter(), sollol.requests.total, app.request_feed.received
            core0, proc0 = thread_cpu(core_id), sum(proc.cpu_times()[:2])
            out0 = pty.bytes_out if pty else 0
            lags0 = len(app.lags)
            window_end = t0 + args.duration - min(3.0, args.duration / 4) - 1.0
            next_key = time.perf_counter() + args.key_interval
            while time.perf_counter() < window_end:
                time.sleep(max(0.0, min(next_key, window_end) - time.perf_counter()))
                if args.key_interval <= 0 or time.perf_counter() < next_key:
                    continue
                next_key += args.key_interval
                key_writes.append(time.monotonic())
                if pty is not None:
                    pty.type("s")
                else:
                    app.call_from_thread(app.simulate_key, "s")
            t1 = time.perf_counter()
            wall = t1 - t0
            result.update(
                requests_per_s=round((sollol.requests.total - req0) / wall, 1),
                records_to_ui_per_s=round((app.request_feed.received - fed0) / wall, 1),
                ui_thread_cpu_pct=round(cpu_between(app.cpu_samples, t0, t1), 1),
                core_thread_cpu_pct=round(100 * (thread_cpu(core_id) - core0) / wall, 1),
                process_cpu_pct=round(100 * (sum(proc.cpu_times()[:2]) - proc0) / wall, 1),
                screen_kbytes_per_s=round(((pty.bytes_out if pty else 0) - out0) / wall / 1024, 1),
                loop_lag_ms_p50=round(1000 * pct(app.lags[lags0:], 0.5), 1),
                loop_lag_ms_p99=round(1000 * pct(app.lags[lags0:], 0.99), 1),
                window_s=round(wall, 1),
                gc_in_window=gc_pauses.between(t0, t1),
            )
            time.sleep(0.5)
            loadgen_out, _ = loadgen.communicate(timeout=args.duration + 30)
            result["loadgen"] = json.loads(loadgen_out.strip().splitlines()[-1]) if loadgen_out.strip() else {}
        except Exception as e:  # noqa: BLE001 - reported
            result["error"] = repr(e)
        finally:
            app.call_from_thread(app.exit, 0)

    threading.Thread(target=control, name="bench-control", daemon=True).start()
    try:
        app.run(headless=args.headless, size=(cols, rows) if args.headless else None)
    finally:
        if pty is not None:
            pty.restore()
        sollol.stop()
        sim.terminate()
        sim.wait(10)
        logging.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    latencies = []
    for written in key_writes:
        ran = next((t for t in app.action_times if t >= written), None)
        if ran is not None:
            latencies.append(1000 * (ran - written))
    result.update(
        driver="headless" if args.headless else f"linux driver on a pseudo-terminal {cols}x{rows}",
        target_rate=args.rate,
        refresh_hz=args.hz,
        keys_sent=len(key_writes),
        keys_handled=len(latencies),
        key_latency_ms_p50=round(statistics.median(latencies), 1) if latencies else None,
        key_latency_ms_p95=round(pct(latencies, 0.95), 1) if latencies else None,
        key_latency_ms_max=round(max(latencies), 1) if latencies else None,
        gc_frozen_objects=gc.get_freeze_count(),
        cpus=os.cpu_count(),
        load_average=[round(v, 2) for v in os.getloadavg()],
    )
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=500.0, help="requests per second (default 500)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    p.add_argument("--concurrency", type=int, default=64, help="most requests in flight (default 64)")
    p.add_argument("--nodes", type=int, default=4, help="simulated nodes (default 4)")
    p.add_argument("--hz", type=float, default=4.0, help="dashboard refresh rate (default 4)")
    p.add_argument("--size", default="120x40", help="terminal size COLSxROWS (default 120x40)")
    p.add_argument("--key-interval", type=float, default=0.5,
                   help="seconds between presses of s (cycle strategy; default 0.5; 0: no keys)")
    p.add_argument("--headless", action="store_true", help="Textual's headless driver instead of a pty")
    p.add_argument("--no-freeze-gc", action="store_true", help="leave start-up objects to the garbage collector")
    p.add_argument("--json", metavar="PATH", help="also write the results here")
    p.add_argument("--loadgen", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.loadgen:
        print(json.dumps(asyncio.run(_loadgen(args.loadgen, args.rate, args.duration, args.concurrency))))
        return
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if "error" in result:
        sys.exit(1)


if __name__ == "__main__":
    main()
