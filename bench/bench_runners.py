"""Mixed num_ctx clients on two real Ollama servers: reloads and total time through SOLLOL, with and without
[models] normalisation, against a seeded random pick, side by side in one run.
`python bench/bench_runners.py [--quick] [--requests N] [--before-root TREE]`

Four clients take turns, one request at a time (two ask for num_ctx 2048, two for 4096), on gemma3-270m
(num_predict 8, temperature 0). Every arm gets two fresh servers (real-ollama, OLLAMA_NUM_PARALLEL=1, on
127.0.0.1), each preloaded with the model at its default runner, so every load an answer shows is a reload:
a num_ctx change makes Ollama 0.5.4 reload (0.9-1.5 s of load_duration against 0.03-0.15 s warm, on this CPU),
and drop every slot's cache.

  random      each request straight to a server picked by a seeded random draw (no gateway)
  sollol      this tree's gateway, nothing configured: each num_ctx should find the server that has it loaded
  normalised  this tree's gateway with [models."gemma3-270m"] num_ctx = 4096: one runner for every client
  before      (with --before-root) the release before's gateway, nothing configured

Figures: reloads (answers whose load_duration is at least RELOAD_S), the total time of all requests, and,
through SOLLOL, its own reload count (sollol_model_reloads_total by /api/stats). Exits 0 (a measurement, not a
test); the last line lists the targets missed (sollol and normalised: no reload after the warm-up, each
client's first request, in which a server may load its runner once).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, free_port, gateway_process, http_json, real_ollama, real_ollama_available, toml_config  # noqa: E402

MODEL = "gemma3-270m"
CLIENTS = (2048, 4096, 2048, 4096)  # the num_ctx each client asks for
RELOAD_S = 0.4  # a load_duration this long is a reload (warm answers: 0.03-0.15 s)
SEED = 7
MISSED: list[str] = []


def line(text: str = "") -> None:
    print(text, flush=True)


def post(url: str, body: dict, timeout: float = 120) -> dict:
    assert url.startswith("http://127.0.0.1"), "load goes to this machine only"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def chat_body(num_ctx: int, turn: int) -> dict:
    return {"model": MODEL, "stream": False, "options": {"num_ctx": num_ctx, "num_predict": 8, "temperature": 0},
            "messages": [{"role": "user", "content": f"Say hello to client {turn % len(CLIENTS)}."}]}


@dataclass
class Arm:
    name: str
    reloads: int = 0
    total_s: float = 0.0
    requests: int = 0
    errors: int = 0
    counted: Optional[int] = None  # the gateway's own count (/api/stats runners)
    loads: tuple[float, ...] = ()
    seconds: tuple[float, ...] = ()  # each request's time, as the client saw it


def turns(n: int, url_for: Callable[[int], str]) -> Arm:
    """n requests, the clients taking turns; url_for(turn) says where each goes."""
    arm = Arm("")
    loads, seconds = [], []
    t0 = time.perf_counter()
    for turn in range(n):
        t1 = time.perf_counter()
        try:
            answer = post(url_for(turn) + "/api/chat", chat_body(CLIENTS[turn % len(CLIENTS)], turn))
        except OSError:
            arm.errors += 1
            continue
        seconds.append(round(time.perf_counter() - t1, 2))
        load = answer.get("load_duration", 0) / 1e9
        loads.append(round(load, 2))
        arm.reloads += load >= RELOAD_S
    arm.total_s = time.perf_counter() - t0
    arm.requests = n
    arm.loads = tuple(loads)
    arm.seconds = tuple(seconds)
    return arm


def fresh_servers():
    """Two fresh one-slot servers, the model preloaded at its default runner on each."""
    return real_ollama([free_port(), free_port()], env={"OLLAMA_NUM_PARALLEL": "1"})


def preload(hosts: list[str]) -> None:
    for h in hosts:
        post(f"http://{h}/api/generate", {"model": MODEL, "prompt": "", "keep_alive": "30m"})


def through_gateway(name: str, n: int, root: str, models: Optional[dict] = None) -> Arm:
    with fresh_servers() as hosts, tempfile.TemporaryDirectory() as tmp:
        preload(hosts)
        args: list[str] = []
        if models:
            args += ["--config", toml_config(f"{tmp}/sollol.toml", models=models)]
        with gateway_process(hosts, *args, root=root) as gw:
            arm = turns(n, lambda turn: gw.url)
            stats = http_json("GET", gw.url + "/api/stats")
            runners = [r for h in stats["hosts"] for r in h.get("runners") or []]
            arm.counted = sum(r.get("reloads", 0) for r in runners) if runners or root == REPO else None
    arm.name = name
    return arm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 requests an arm (a smoke run)")
    ap.add_argument("--requests", type=int, default=None, help="requests an arm (default 20)")
    ap.add_argument("--before-root", default=None, help="a source tree of the release before, for its arm")
    opts = ap.parse_args()
    if not real_ollama_available():
        line("real Ollama is not installed (REAL_OLLAMA, REAL_OLLAMA_DIR): nothing measured")
        return 0
    n = opts.requests or (8 if opts.quick else 20)
    os.chdir(REPO)
    line(f"{len(CLIENTS)} clients taking turns (num_ctx {', '.join(map(str, CLIENTS))}), {n} requests an arm, "
         f"2 real Ollama servers (one slot each); a reload: load_duration >= {RELOAD_S} s")
    arms: list[Arm] = []
    rng = random.Random(SEED)
    with fresh_servers() as hosts:
        preload(hosts)
        picks = [rng.choice(hosts) for _ in range(n)]
        arm = turns(n, lambda turn: f"http://{picks[turn]}")
        arm.name = f"random (seed {SEED})"
        arms.append(arm)
    arms.append(through_gateway("sollol", n, REPO))
    arms.append(through_gateway("normalised", n, REPO, models={MODEL: {"num_ctx": 4096}}))
    if opts.before_root:
        arms.append(through_gateway("before", n, opts.before_root))
    base = arms[0]
    line(f"{'arm':<18}{'reloads':>8}{'of':>5}{'total s':>9}{'× random':>10}{'sollol says':>13}{'errors':>8}")
    for a in arms:
        said = "—" if a.counted is None else str(a.counted)
        line(f"{a.name:<18}{a.reloads:>8}{a.requests:>5}{a.total_s:>9.1f}{a.total_s / base.total_s:>10.2f}"
             f"{said:>13}{a.errors:>8}")
    for a in arms:
        line(f"  {a.name} load_duration s: {' '.join(map(str, a.loads))}")
        line(f"  {a.name} seconds a request: {' '.join(map(str, a.seconds))}")
    for a in arms[1:3]:  # warm-up: each client's first request (a server may load its runner once)
        late = sum(1 for x in a.loads[len(CLIENTS):] if x >= RELOAD_S)
        ok = late == 0
        line(f"{a.name}: no reload after the warm-up ({len(CLIENTS)} requests): {'OK' if ok else 'MISS'} "
             f"({late} after)")
        if not ok:
            MISSED.append(f"{a.name} reloads after the warm-up")
    line(f"targets missed: {', '.join(MISSED) if MISSED else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
