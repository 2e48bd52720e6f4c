"""Gateway benchmark: one command, one table. `python bench/bench_gateway.py [--quick] [--lane-only]
[--against COMMIT ...] [--keys]`

Side by side in one run, on simulated nodes in their own process and the gateway (`sollol --no-ui`) in
its own process, all on 127.0.0.1:
  0. the fast lane, against older source trees (git worktrees of --against, default 2da9b9d and b334434)
     run at the same time on the same two 20 ms nodes with 64 slots, rounds interleaved: added p50 at c=1
     on /v1/chat/completions and /api/chat (target <= 0.5 ms), throughput at c=64 (target >= 2da9b9d's),
     gateway CPU per request at c=16 (target <= 0.8 x 2da9b9d's) and each node's share (target 45-55%);
     the floor (bench/floor_gateway.py: the same server and upstream pool with no stages between them)
     runs in the same rounds, so the table shows what the stages cost above it;
     with --keys every tree that knows api_keys runs a second gateway with a key configured, the requests
     carrying it ("<tree> +keys"), in the same rounds: what checking the key costs per request, at c=1 and
     c=64 (target: the guard adds < 0.05 ms)
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

from typing import Optional  # noqa: E402

from common import (  # noqa: E402
    closed_loop,
    config_source,
    cpu_seconds,
    floor_process,
    gateway_process,
    http_json,
    run,
    sim_process,
    toml_config,
    worktree,
)

from sollol_core.sim import SimNodeSpec  # noqa: E402

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello"}], "stream": False,
        "options": {"num_predict": 8}}


def line(*cols) -> None:
    print("  ".join(str(c) for c in cols), flush=True)


V1_CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
LANE_ROUTES = (("/v1/chat/completions", V1_CHAT), ("/api/chat", CHAT))
DEFAULT_AGAINST = ("2da9b9d", "b334434")


BENCH_KEY = "sk-bench-lane-0001"
KEYED = {"Authorization": f"Bearer {BENCH_KEY}"}


def knows_keys(root: Optional[str]) -> bool:
    """Whether a source tree has api_keys (this one does; older trees may not)."""
    if root is None:
        return True
    return "api_keys" in config_source(root)


def _served(url: str) -> dict[str, int]:
    """Requests each host served, from the gateway's /api/stats (every tree has the field)."""
    return {h["host"]: h.get("requests_total", 0) for h in http_json("GET", url + "/api/stats")["hosts"]}


def fast_lane(against: list[str], quick: bool, keys: bool = False) -> dict:
    """Every tree's gateway runs at once on the same nodes; each measurement goes round the trees in turn,
    so drift on a shared machine hits every tree alike. Returns {tree: {figure: value}} and the direct run.
    keys: each tree that knows api_keys also runs as "<tree> +keys", with a key configured and sent."""
    import statistics
    import tempfile
    from contextlib import ExitStack

    trees = [(c, worktree(c)) for c in against] + [("this tree", None)]
    variants = [(label, root, False) for label, root in trees]
    if keys:
        variants += [(f"{label} +keys", root, True) for label, root in trees if knows_keys(root)]
    specs = [SimNodeSpec(name=n, latency_ms=20, capacity=64, tokens=1, tokens_per_s=0) for n in ("a", "b")]
    n1, n64, n16 = (60, 600, 600) if quick else (200, 3000, 2000)
    rounds = 2 if quick else 4
    out: dict = {label: {} for label, _, _ in variants}
    out["direct"] = {}
    with sim_process(specs) as nodes, ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        keyed_config = toml_config(os.path.join(tmp, "keyed.toml"), api_keys={BENCH_KEY: {"name": "bench"}})
        gws = {label: stack.enter_context(gateway_process(nodes, "--no-adaptive-metrics",
                                                          *(("--config", keyed_config) if keyed else ()), root=root))
               for label, root, keyed in variants}
        gws["floor"] = stack.enter_context(floor_process(nodes))
        out["floor"] = {}
        headers = {label: (KEYED if keyed else None) for label, _, keyed in variants}
        headers["floor"] = None
        direct = f"http://{nodes[0]}"
        for route, body in LANE_ROUTES:
            run(closed_loop(direct + route, body, 4, count=100))  # warm: connections, code paths
            for label, g in gws.items():
                run(closed_loop(g.url + route, body, 4, count=100, headers=headers[label]))
            lat: dict[str, list[float]] = {k: [] for k in out}
            for _ in range(rounds):
                lat["direct"] += run(closed_loop(direct + route, body, 1, count=n1 // rounds)).latencies_ms
                for label, g in gws.items():
                    lat[label] += run(closed_loop(g.url + route, body, 1, count=n1 // rounds,
                                                  headers=headers[label])).latencies_ms
            d50 = statistics.median(lat["direct"])
            out["direct"][f"p50 {route}"] = d50
            for label in gws:
                out[label][f"added {route}"] = statistics.median(lat[label]) - d50
            rps: dict[str, list[float]] = {k: [] for k in out}
            for _ in range(2):
                rps["direct"].append(run(closed_loop(direct + route, body, 64, count=n64 // 2)).throughput)
                for label, g in gws.items():
                    rps[label].append(run(closed_loop(g.url + route, body, 64, count=n64 // 2,
                                                      headers=headers[label])).throughput)
            for label in out:
                out[label][f"c64 {route}"] = statistics.median(rps[label])
        # CPU per request and the nodes' shares at c=16, in interleaved rounds like the rest (a tree measured
        # in one go would carry whatever the machine's neighbours did meanwhile)
        cpu_s = {label: 0.0 for label in gws}
        served = {label: 0 for label in gws}
        done = {label: [0, 0] for label in gws}
        errors = {label: 0 for label in gws}
        for _ in range(rounds):
            for label, g in gws.items():
                counted = label != "floor"  # the floor keeps no books: it takes the hosts in turn
                before, cpu0 = _served(g.url) if counted else {}, cpu_seconds(g.proc.pid)
                r = run(closed_loop(g.url + "/api/chat", CHAT, 16, count=n16 // rounds, headers=headers[label]))
                cpu_s[label] += cpu_seconds(g.proc.pid) - cpu0
                after = _served(g.url) if counted else {}
                for i, n in enumerate(nodes):
                    done[label][i] += after.get(n, 0) - before.get(n, 0)
                served[label] += r.count
                errors[label] += r.errors
        for label in gws:
            out[label]["cpu ms/request c16"] = cpu_s[label] * 1000 / max(1, served[label])
            if label != "floor":
                out[label]["share of node b c16"] = done[label][1] / max(1, sum(done[label]))
            out[label]["errors"] = errors[label]
        # what this tree's gateway says of each node at the end: the reason when the shares are far apart
        hosts = http_json("GET", gws["this tree"].url + "/api/stats")["hosts"]
        out["this tree"]["hosts"] = [
            f"{h['host']}: {h.get('state')}, {h.get('requests_total')} requests, {h.get('failures_total')} failed"
            f" (last error: {h.get('last_error') or 'none'}), loaded {h.get('models_loaded')}, slots "
            f"{h.get('slots')}{' learned' if h.get('slots_learned') else ''}, score terms "
            + ", ".join(f"{k} {v:.4f}" for k, v in (h.get("score_terms") or {}).items()) for h in hosts]
    return out


def print_lane(res: dict, against: list[str]) -> bool:
    base = res[against[0]] if against else None
    labels = [k for k in res if k not in ("direct", "floor")] + (["floor"] if "floor" in res else [])
    width = max(14, *(len(k) + 2 for k in labels))
    line(f"  {'':<34}" + "".join(f"{k:>{width}}" for k in labels) + f"{'direct':>12}")
    ok = True
    rows = [f"added {r}" for r, _ in LANE_ROUTES] + [f"c64 {r}" for r, _ in LANE_ROUTES] + \
        ["cpu ms/request c16", "share of node b c16"]
    for row in rows:
        cells = []
        for k in labels:
            v = res[k].get(row)
            cells.append(f"{v:>{width}.3f}" if isinstance(v, float) else f"{'':>{width}}")
        d = res["direct"].get(row.replace("added", "p50"))
        line(f"  {row:<34}" + "".join(cells) + (f"{d:>12.2f}" if d is not None else ""))
    failed = {k: res[k].get("errors", 0) for k in labels if res[k].get("errors")}
    if failed:  # failed requests are not in the latencies: a gateway that fails fast would look fast
        line("  requests that failed at c=16 (no figure counts a failed request): "
             + ", ".join(f"{k} {n}" for k, n in failed.items()))
    me = res["this tree"]
    for r, _ in LANE_ROUTES:
        good = me[f"added {r}"] <= 0.5
        ok &= good
        line(f"  added p50 c=1 {r}: {me[f'added {r}']:.2f} ms (target <= 0.5 ms) {'OK' if good else 'MISS'}")
    if base is not None:
        for r, _ in LANE_ROUTES:
            good = me[f"c64 {r}"] >= base[f"c64 {r}"]
            ok &= good
            line(f"  c=64 {r}: {me[f'c64 {r}']:.0f} req/s against {base[f'c64 {r}']:.0f} for {against[0]} "
                 f"(target >=) {'OK' if good else 'MISS'}")
        ratio = me["cpu ms/request c16"] / base["cpu ms/request c16"]
        good = ratio <= 0.8
        ok &= good
        line(f"  gateway CPU per request c=16: {me['cpu ms/request c16']:.3f} ms, {ratio:.2f} x {against[0]}'s "
             f"(target <= 0.8) {'OK' if good else 'MISS'}")
    share = me["share of node b c16"]
    good = 0.45 <= share <= 0.55
    ok &= good
    line(f"  share of the second node c=16: {share:.0%} (target 45-55%) {'OK' if good else 'MISS'}")
    if not good:
        for row in me.get("hosts", ()):
            line(f"    {row}")
    floor = res.get("floor")
    if floor:  # what the stages cost: this tree above its own server and pool with nothing between them
        line("  floor (bench/floor_gateway.py: the own server and pool, no stages): added p50 c=1 "
             + ", ".join(f"{floor[f'added {r}']:.2f} ms {r}" for r, _ in LANE_ROUTES)
             + f"; CPU {floor['cpu ms/request c16']:.3f} ms/request c=16")
        line("  this tree's stages above the floor: "
             + ", ".join(f"{me[f'added {r}'] - floor[f'added {r}']:+.2f} ms c=1 {r}" for r, _ in LANE_ROUTES)
             + f", {me['cpu ms/request c16'] - floor['cpu ms/request c16']:+.3f} ms CPU/request c=16"
             + (f" (a CPU target of 0.8 x {against[0]}'s leaves them "
                f"{0.8 * base['cpu ms/request c16'] - floor['cpu ms/request c16']:.3f} ms)" if base else ""))
    keyed = res.get("this tree +keys")
    if keyed is not None:  # --keys: what checking a key costs on this tree, measured in the same rounds
        for r, _ in LANE_ROUTES:
            extra = keyed[f"added {r}"] - me[f"added {r}"]
            line(f"  with an API key {r}: {extra:+.3f} ms at c=1 (p50, same rounds), c=64 "
                 f"{keyed[f'c64 {r}']:.0f} against {me[f'c64 {r}']:.0f} req/s")
        line(f"  with an API key, gateway CPU per request c=16: "
             f"{keyed['cpu ms/request c16'] - me['cpu ms/request c16']:+.3f} ms (target: < 0.05 ms)")
    return ok


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
    ap.add_argument("--against", action="append", metavar="COMMIT",
                    help=f"older trees for the fast-lane rows (default {' and '.join(DEFAULT_AGAINST)}); "
                         "'none' for none")
    ap.add_argument("--lane-only", action="store_true", help="only the fast-lane rows")
    ap.add_argument("--keys", action="store_true",
                    help="the fast lane also with an API key configured and sent (each tree that knows api_keys)")
    args = ap.parse_args()
    q = args.quick
    ok = True
    print("SOLLOL gateway benchmark (simulated nodes, 127.0.0.1)\n")
    against = [c for c in (args.against or list(DEFAULT_AGAINST)) if c != "none"]
    print(f"0 fast lane: two 20 ms nodes x 64 slots; trees: {', '.join(against + ['this tree'])}; "
          "added and p50 in ms, c64 in req/s")
    ok &= print_lane(fast_lane(against, q, keys=args.keys), against)
    if args.lane_only:
        print("\nall targets met" if ok else "\nsome targets missed")
        return 0 if ok else 1

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
