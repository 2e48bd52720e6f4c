"""Ray executor against the in-loop executor: `python bench/bench_ray.py [--quick]`

Same simulated node (20 ms, 128 slots, its own process), two gateways (`sollol --no-ui`, one with
`--executor ray`), side by side in one run, all on 127.0.0.1:
  - added latency at concurrency 1 (p50 against the node called directly)
  - throughput at concurrency 16 and 64
  - memory: RSS of each gateway's process tree (Ray's processes are children of the gateway)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import closed_loop, gateway_process, run, sim_process  # noqa: E402

from sollol_core.sim import SimNodeSpec  # noqa: E402

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello"}], "stream": False}


def wait_ray_ready(url: str, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        executor = json.load(urllib.request.urlopen(url + "/api/stats", timeout=5))["executor"]
        if executor["state"] in ("ready", "failed"):
            return executor
        time.sleep(0.5)
    raise RuntimeError("ray did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    n = 200 if ap.parse_args().quick else 600
    spec = SimNodeSpec(name="n20", latency_ms=20, capacity=128, tokens=1, tokens_per_s=0)
    print("Ray executor against the in-loop executor (simulated 20 ms node, 127.0.0.1)\n")
    with sim_process([spec]) as [node], \
            gateway_process([node], "--no-adaptive-metrics") as plain, \
            gateway_process([node], "--no-adaptive-metrics", "--executor", "ray", "--workers", "2") as rayg:
        t0 = time.time()
        executor = wait_ray_ready(rayg.url)
        if executor["state"] != "ready":
            print("ray failed:", executor["error"])
            return 1
        print(f"ray ready {time.time() - t0 + rayg.started_s:.1f} s after start ({executor['actors']} actors); "
              f"the gateway answered after {rayg.started_s:.2f} s\n")
        targets = {"direct": f"http://{node}/api/chat", "async": plain.url + "/api/chat",
                   "ray": rayg.url + "/api/chat"}
        for url in targets.values():
            run(closed_loop(url, CHAT, 8, count=80))  # warm connections and actors
        lat: dict[str, list[float]] = {k: [] for k in targets}
        for _ in range(5):  # interleaved rounds: drift on a shared machine hits all alike
            for name, url in targets.items():
                lat[name] += run(closed_loop(url, CHAT, 1, count=n // 10)).latencies_ms
        p50 = {k: statistics.median(v) for k, v in lat.items()}
        print(f"{'':<10}{'c=1 p50 ms':>11}{'added ms':>10}{'c=16 req/s':>12}{'c=64 req/s':>12}{'errors':>8}")
        rows = {}
        for name, url in targets.items():
            r16 = run(closed_loop(url, CHAT, 16, count=n))
            r64 = run(closed_loop(url, CHAT, 64, count=n * 2))
            rows[name] = (r16.throughput, r64.throughput, r16.errors + r64.errors)
        for name in targets:
            added = p50[name] - p50["direct"]
            print(f"{name:<10}{p50[name]:>11.2f}{added:>10.2f}{rows[name][0]:>12.1f}{rows[name][1]:>12.1f}"
                  f"{rows[name][2]:>8}")
        print(f"\nray / async throughput: c=16 {rows['ray'][0] / rows['async'][0]:.2f}, "
              f"c=64 {rows['ray'][1] / rows['async'][1]:.2f}; added latency ray - async "
              f"{p50['ray'] - p50['async']:.2f} ms")
        print(f"memory (RSS of the process tree): async {plain.rss_mb():.0f} MB, ray {rayg.rss_mb():.0f} MB "
              f"(Ray adds {rayg.rss_mb() - plain.rss_mb():.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
