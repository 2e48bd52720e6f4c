"""Gateway benchmark: one command, one table. `python bench/bench_gateway.py [--quick]`

Side by side in one run, on simulated nodes in their own process and the gateway (`sollol --no-ui`) in
its own process, all on 127.0.0.1:
  1. added latency against direct at concurrency 1 on a 20 ms node (target: p50 added <= 1 ms)
  2. throughput through the gateway against direct at concurrency 16 on a 200 ms node with 64 slots
     (target >= 0.95 of direct)
  3. a mixed cluster (fast 30 ms x 4 slots, medium 120 ms x 2, slow 600 ms x 1, flaky 30 ms with 20 %
     errors): p50, p99 and client-visible errors per strategy (target: performance and p2c p99 <= 0.5 x
     round_robin's, no client-visible error)
  4. seconds from start to the first answered /api/health (target <= 2 s) and RSS of the process tree
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import closed_loop, gateway_process, run, sim_process  # noqa: E402

from sollol_core.sim import SimNodeSpec  # noqa: E402

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello"}], "stream": False,
        "options": {"num_predict": 8}}


def line(*cols) -> None:
    print("  ".join(str(c) for c in cols), flush=True)


def added_latency(n: int) -> dict:
    spec = SimNodeSpec(name="n20", latency_ms=20, capacity=64, tokens=1, tokens_per_s=0)
    with sim_process([spec]) as [node], gateway_process([node], "--no-adaptive-metrics") as gw:
        run(closed_loop(gw.url + "/api/chat", CHAT, 1, count=30))  # warm both paths
        run(closed_loop(f"http://{node}/api/chat", CHAT, 1, count=30))
        # interleave rounds so drift on a shared machine hits both sides alike
        direct, via = [], []
        for _ in range(5):
            direct += run(closed_loop(f"http://{node}/api/chat", CHAT, 1, count=n // 5)).latencies_ms
            via += run(closed_loop(gw.url + "/api/chat", CHAT, 1, count=n // 5)).latencies_ms
    import statistics

    d50, g50 = statistics.median(direct), statistics.median(via)
    return {"direct_p50_ms": d50, "gateway_p50_ms": g50, "added_p50_ms": g50 - d50}


def throughput(n: int) -> dict:
    spec = SimNodeSpec(name="n200", latency_ms=200, capacity=64, tokens=1, tokens_per_s=0)
    with sim_process([spec]) as [node], gateway_process([node], "--no-adaptive-metrics") as gw:
        run(closed_loop(gw.url + "/api/chat", CHAT, 16, count=32))
        direct = run(closed_loop(f"http://{node}/api/chat", CHAT, 16, count=n))
        via = run(closed_loop(gw.url + "/api/chat", CHAT, 16, count=n))
    return {"direct_rps": direct.throughput, "gateway_rps": via.throughput,
            "ratio": via.throughput / direct.throughput, "errors": direct.errors + via.errors}


def mixed(duration: float, concurrency: int) -> dict:
    specs = [
        SimNodeSpec(name="fast", latency_ms=30, capacity=4, tokens=1, tokens_per_s=0),
        SimNodeSpec(name="medium", latency_ms=120, capacity=2, tokens=1, tokens_per_s=0),
        SimNodeSpec(name="slow", latency_ms=600, capacity=1, tokens=1, tokens_per_s=0),
        SimNodeSpec(name="flaky", latency_ms=30, capacity=4, failure_rate=0.2, tokens=1, tokens_per_s=0, seed=1),
    ]
    results = {}
    with sim_process(specs) as nodes:
        for strategy in ("round_robin", "priority", "performance", "p2c"):
            with gateway_process(nodes, "--strategy", strategy) as gw:
                r = run(closed_loop(gw.url + "/api/chat", CHAT, concurrency, duration_s=duration))
            results[strategy] = {"p50": r.pct(50), "p99": r.pct(99), "errors": r.errors, "count": r.count,
                                 "rps": r.throughput}
    return results


def startup(rounds: int) -> dict:
    spec = SimNodeSpec(name="n", latency_ms=5)
    times, rss = [], []
    with sim_process([spec]) as [node]:
        for _ in range(rounds):
            with gateway_process([node]) as gw:
                times.append(gw.started_s)
                rss.append(gw.rss_mb())
    return {"start_s": min(times), "start_s_max": max(times), "rss_mb": max(rss)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer requests (a smoke run, noisier figures)")
    args = ap.parse_args()
    q = args.quick
    ok = True
    print("SOLLOL gateway benchmark (simulated nodes, 127.0.0.1)\n")

    a = added_latency(100 if q else 500)
    good = a["added_p50_ms"] <= 1.0
    ok &= good
    line(f"1 added latency c=1, 20 ms node: direct p50 {a['direct_p50_ms']:.2f} ms, gateway p50 "
         f"{a['gateway_p50_ms']:.2f} ms, added {a['added_p50_ms']:.2f} ms (target <= 1 ms) {'OK' if good else 'MISS'}")

    t = throughput(160 if q else 640)
    good = t["ratio"] >= 0.95 and t["errors"] == 0
    ok &= good
    line(f"2 throughput c=16, 200 ms node x 64 slots: direct {t['direct_rps']:.1f} req/s, gateway "
         f"{t['gateway_rps']:.1f} req/s, ratio {t['ratio']:.3f} (target >= 0.95) {'OK' if good else 'MISS'}")

    m = mixed(4.0 if q else 10.0, 8)
    print("3 mixed cluster, c=8 (fast 30ms x4, medium 120ms x2, slow 600ms x1, flaky 30ms 20% errors):")
    line(f"  {'strategy':<12} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for name, r in m.items():
        line(f"  {name:<12} {r['count']:>8} {r['rps']:>7.1f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['errors']:>6}")
    rr = m["round_robin"]["p99"]
    for name in ("performance", "p2c"):
        ratio = m[name]["p99"] / rr
        good = ratio <= 0.5 and m[name]["errors"] == 0
        ok &= good
        line(f"  {name}: p99 / round_robin p99 = {ratio:.3f} (target <= 0.5), client errors "
             f"{m[name]['errors']} (target 0) {'OK' if good else 'MISS'}")

    s = startup(3 if q else 5)
    good = s["start_s"] <= 2.0
    ok &= good
    line(f"4 start to first answered /api/health: {s['start_s']:.2f} s (best; worst {s['start_s_max']:.2f} s; "
         f"target <= 2 s) {'OK' if good else 'MISS'}; RSS of the process tree {s['rss_mb']:.0f} MB")
    print("\nall targets met" if ok else "\nsome targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
