"""Slots and the gateway queue against an older SOLLOL, side by side in one run.
`python bench/bench_queue.py [--quick] [--only sweep,batch,fair] [--before COMMIT]`

"before": the gateway of --before (default b334434, the release before the interactive reserve, fair shares
and batch pipelining; 2da9b9d is the one before slots and the queue), a git worktree under /tmp made when
missing, run as `python -m sollol_tui.cli --no-ui` with PYTHONPATH pointing at it, configured like "after"
when it knows slots. "after": this tree's gateway with every node's slots configured (host_settings
num_parallel = the node's num_parallel). The simulated nodes come
from this tree for both; everything on 127.0.0.1, nodes and gateway in their own processes, fresh for every
measurement. Arrivals are open loop (Poisson), seeded; every answer is read whole (stream false).

Cluster: "fast" (200 ms a request, 4 slots, at most 8 waiting inside) and "slow" (8 x the service time,
1600 ms, 1 slot, at most 2 waiting); beyond its queue a node answers 503 "server busy" as Ollama does.
Capacity = 4/0.2 + 1/1.6 = 20.6 requests/s.

  sweep  0.5x, 1x, 1.5x, 2x capacity: goodput (2xx answered per second), p50/p99 latency of the answered,
         rejections (503/429 with Retry-After, which a client can act on) and errors (anything else: other
         statuses, 503 without Retry-After, resets, timeouts). Target: 0 errors after.
  batch  interactive chats at 40 % of capacity while a 20,000-document /api/embed/batch job (autobatch)
         runs on both nodes: chat p99 against chats alone (target <= 1.25x + 20 ms) and the batch's documents/s
         against the batch alone (target >= 50 %), measured over fixed windows (the job is not waited out).
         Twice: the batch on its own embedding model (one slot per node, as in Ollama: a simulated node
         shares no compute between models, so this shows the gateway's own interference), and the batch on
         the chat model (the same slots as the chats: the contention a host with one runner has).
  fair   three clients, one sending 10x the others' rate, 1.5x capacity in all: the quiet clients' p99
         against their p99 alone (target <= 1.5x). After: each client has its own API key ([api_keys]);
         before: SOLLOL had no notion of clients, nothing tells them apart.

Exits 0 (a measurement, not a test); the last line lists the targets missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aiohttp  # noqa: E402
from common import (  # noqa: E402
    REPO,
    Answer,
    config_source,
    gateway_process,
    http_json,
    open_loop,
    pct,
    poisson_times,
    send,
    sim_process,
    toml_config,
    worktree,
)

from sollol_core.sim import SimNodeSpec  # noqa: E402

BEFORE_COMMIT = "b334434"
CHAT_MODEL = "llama3.2"
EMBED_MODEL = "nomic-embed-text"
FAST_MS, SLOW_MS = 200.0, 1600.0
FAST_SLOTS, SLOW_SLOTS = 4, 1
CAPACITY = FAST_SLOTS * 1000 / FAST_MS + SLOW_SLOTS * 1000 / SLOW_MS  # requests/s
CHAT = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hello"}], "stream": False}
KEYS = {"key-quiet-a": "quiet-a", "key-quiet-b": "quiet-b", "key-loud": "loud"}
MISSED: list[str] = []


def line(text: str = "") -> None:
    print(text, flush=True)


def verdict(ok: bool, what: str) -> str:
    if not ok:
        MISSED.append(what)
    return "OK" if ok else "MISS"


def specs() -> list[SimNodeSpec]:
    common = dict(tokens=1, tokens_per_s=0, models=[CHAT_MODEL, EMBED_MODEL], embed_dim=16)
    return [SimNodeSpec(name="fast", latency_ms=FAST_MS, capacity=FAST_SLOTS, num_parallel=FAST_SLOTS, max_queue=8,
                        embed_ms_per_input=2.0, seed=1, **common),
            SimNodeSpec(name="slow", latency_ms=SLOW_MS, capacity=SLOW_SLOTS, num_parallel=SLOW_SLOTS, max_queue=2,
                        embed_ms_per_input=16.0, seed=2, **common)]


def ensure_before() -> str:
    """A git worktree of the --before commit (made once, reused)."""
    return worktree(BEFORE_COMMIT)


def knows_slots(root: str) -> bool:
    return "num_parallel" in config_source(root)


@contextmanager
def cluster(column: str, keys: bool = False) -> Iterator[tuple[str, list[str]]]:
    """Fresh nodes and a fresh gateway of the column; yields (gateway url, node addresses)."""
    with tempfile.TemporaryDirectory() as tmp, sim_process(specs()) as nodes:
        args = ["--batch-db", f"{tmp}/q.db", "--autobatch-interval", "1"]
        root = ensure_before() if column == "before" else REPO
        if knows_slots(root):
            sections: dict = {"host_settings": {a: {"num_parallel": s.num_parallel}
                                                for a, s in zip(nodes, specs())}}
            if keys:
                sections["api_keys"] = {k: {"name": n} for k, n in KEYS.items()}
            args += ["--config", toml_config(f"{tmp}/sollol.toml", **sections)]
        with gateway_process(nodes, *args, root=root) as gw:
            yield gw.url, nodes


async def poisson_chats(url: str, streams: list[tuple[str, float, Optional[str]]], seconds: float, seed: int,
                        limit_s: float = 120.0) -> list[Answer]:
    """Open-loop Poisson chat requests, one stream per (tag, rate/s, API key); every answer awaited (bounded)."""
    schedule = []
    for i, (tag, rate, key) in enumerate(streams):
        for t in poisson_times(rate, seconds, seed * 100 + i):
            schedule.append((t, (tag, key)))
    schedule.sort(key=lambda x: x[0])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async def fire(item: tuple[str, Optional[str]]) -> Answer:
            tag, key = item
            headers = {"Authorization": f"Bearer {key}"} if key else None
            return await send(http, url + "/api/chat", CHAT, headers=headers, timeout_s=60, tag=tag)

        out = await open_loop(schedule, fire, limit_s=seconds + limit_s)
    return [a if a is not None else Answer(0, (seconds + limit_s) * 1000, error="not answered in time")
            for a in out]


def warm(url: str, key: Optional[str] = None) -> None:
    """A few seconds at half capacity, not measured: the gateway has measured both nodes (a running one has)."""
    asyncio.run(poisson_chats(url, [("warm", CAPACITY * 0.5, key)], 2.0, 99))


def attempts(url: str, nodes: list[str]) -> dict[str, int]:
    """Upstream attempts per node so far (the gateway's requests_total per host: retries and busy answers too)."""
    names = dict(zip(nodes, [s.name for s in specs()]))
    return {names[h["host"]]: int(h.get("requests_total", 0)) for h in http_json("GET", url + "/api/stats")["hosts"]
            if h["host"] in names}


def span_s(answers: list[Answer]) -> float:
    if not answers:
        return 0.0
    return max(a.start + a.latency_ms / 1000 for a in answers) - min(a.start for a in answers)


def summary(answers: list[Answer]) -> dict:
    ok = [a for a in answers if a.ok]
    rejected = [a for a in answers if not a.ok and a.clean_reject]
    errors = [a for a in answers if not a.ok and not a.clean_reject]
    lat = [a.latency_ms for a in ok]
    return {"sent": len(answers), "ok": len(ok), "p50": pct(lat, 50), "p99": pct(lat, 99),
            "rejected": len(rejected), "errors": len(errors), "first_error": errors[0] if errors else None}


def error_kinds(answers: list[Answer]) -> str:
    kinds: dict[str, int] = {}
    for a in answers:
        if not a.ok and not a.clean_reject:
            k = f"{a.status}" + ("" if a.retry_after is None else "+RA") + (f" {a.error[:60]}" if a.error else "")
            kinds[k] = kinds.get(k, 0) + 1
    return "; ".join(f"{n}x {k}" for k, n in sorted(kinds.items(), key=lambda x: -x[1])[:3])


# sweep ----------------------------------------------------------------------------------------------------
def sweep(seeds: list[int], seconds: float) -> None:
    line(f"sweep: open-loop Poisson /api/chat, {len(seeds)} seed(s) x {seconds:g} s per load; capacity "
         f"{CAPACITY:.1f} requests/s")
    line(f"  {'load':>5} {'column':<7} {'sent':>5} {'ok':>5} {'goodput/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
         f"{'rejected':>8} {'errors':>6}  (rejected: 503/429 with Retry-After; errors: anything else)")
    for load in (0.5, 1.0, 1.5, 2.0):
        rows = {}
        for column in ("before", "after"):
            answers: list[Answer] = []
            goodput_ok, goodput_s = 0, 0.0
            with cluster(column) as (url, nodes):
                warm(url)
                a0 = attempts(url, nodes)
                for seed in seeds:
                    got = asyncio.run(poisson_chats(url, [("chat", CAPACITY * load, None)], seconds, seed))
                    answers += got
                    goodput_ok += sum(1 for a in got if a.ok)
                    goodput_s += span_s(got)
                a1 = attempts(url, nodes)
            s = rows[column] = summary(answers)
            tries = " ".join(f"{n} {a1[n] - a0.get(n, 0)}" for n in a1)
            s["goodput"] = goodput_ok / goodput_s if goodput_s else 0.0
            line(f"  {load:>4.1f}x {column:<7} {s['sent']:>5} {s['ok']:>5} {s['goodput']:>9.2f} {s['p50']:>8.0f} "
                 f"{s['p99']:>8.0f} {s['rejected']:>8} {s['errors']:>6}  attempts: {tries}  {error_kinds(answers)}")
        line(f"        after errors {rows['after']['errors']} (target 0) "
             f"{verdict(rows['after']['errors'] == 0, f'sweep {load}x: errors after')}; goodput after/before "
             f"x{rows['after']['goodput'] / max(rows['before']['goodput'], 1e-9):.2f}; p99 after/before "
             f"x{rows['after']['p99'] / max(rows['before']['p99'], 1e-9):.2f}")


# batch ----------------------------------------------------------------------------------------------------
def docs(n: int, tag: str) -> list[str]:
    return [f"{tag} document {i}: the quick brown fox jumps over the lazy dog {i % 97}" for i in range(n)]


def batch_done(url: str) -> int:
    return int(http_json("GET", url + "/api/batch-status")["done"])


def submit(url: str, model: str, documents: list[str]) -> list[str]:
    return [http_json("POST", url + "/api/embed/batch", {"model": model, "docs": documents[i:i + 10000]},
                      timeout=120)["job_id"] for i in range(0, len(documents), 10000)]


def wait_done(url: str, target: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while batch_done(url) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"batch warm-up not done after {timeout_s} s")
        time.sleep(0.1)


def chat_windows(url: str, seeds: list[int], seconds: float) -> list[Answer]:
    out: list[Answer] = []
    for seed in seeds:
        out += asyncio.run(poisson_chats(url, [("chat", CAPACITY * 0.4, None)], seconds, seed))
    return out


def batch_scenario(seeds: list[int], seconds: float, alone_s: float, n_docs: int) -> None:
    line(f"batch: chats at 40% of capacity ({CAPACITY * 0.4:.1f}/s, {len(seeds)} x {seconds:g} s windows) while a "
         f"{n_docs}-document batch runs; batch documents/s over {alone_s:g} s alone and over the chat windows")
    line(f"  {'batch on':<22} {'column':<7} {'chat p50':>8} {'p99 alone':>9} {'p99 w/ batch':>12} {'ratio':>6} "
         f"{'err':>4} {'docs/s alone':>12} {'w/ chats':>8} {'share':>6}")
    for label, model in (("its own embedding model", EMBED_MODEL), ("the chat model", CHAT_MODEL)):
        for column in ("before", "after"):
            with cluster(column) as (url, _):
                warm(url)
                submit(url, model, docs(200, "warm-up"))  # Dask starts with the first batch
                wait_done(url, 200, 120)
                alone = chat_windows(url, seeds, seconds)
                base = batch_done(url)
                submit(url, model, docs(n_docs, "bench"))
                time.sleep(3.0)  # the autobatch loop picks the job up and fills the hosts
                d0, t0 = batch_done(url), time.perf_counter()
                time.sleep(alone_s)
                d1, t1 = batch_done(url), time.perf_counter()
                both = chat_windows(url, seeds, seconds)
                d2, t2 = batch_done(url), time.perf_counter()
                if d2 - base >= n_docs:
                    line("    note: the whole job finished inside the window; docs/s understated")
            a, b = summary(alone), summary(both)
            rate_alone = (d1 - d0) / (t1 - t0)
            rate_both = (d2 - d1) / (t2 - t1)
            ratio = b["p99"] / a["p99"] if a["p99"] else float("nan")
            share = rate_both / rate_alone if rate_alone else float("nan")
            line(f"  {label:<22} {column:<7} {b['p50']:>8.0f} {a['p99']:>9.0f} {b['p99']:>12.0f} {ratio:>6.2f} "
                 f"{a['errors'] + b['errors']:>4} {rate_alone:>12.1f} {rate_both:>8.1f} {share:>6.2f}  "
                 f"{error_kinds(alone + both)}")
            if column == "after":
                bound = 1.25 * a["p99"] + 20
                line(f"    after: chat p99 ratio {ratio:.2f}, {b['p99']:.0f} ms (target <= 1.25 x alone + 20 ms = "
                     f"{bound:.0f} ms) {verdict(b['p99'] <= bound, f'batch on {label}: chat p99')}; batch share {share:.2f} "
                     f"(target >= 0.50) {verdict(share >= 0.5, f'batch on {label}: batch throughput')}")


# fairness -------------------------------------------------------------------------------------------------
def fairness(seeds: list[int], seconds: float) -> None:
    r = 1.5 * CAPACITY / 12
    line(f"fair: quiet-a and quiet-b at {r:.2f}/s each, loud at {10 * r:.1f}/s (1.5x capacity in all); "
         f"{len(seeds)} x {seconds:g} s windows")
    line(f"  {'column':<7} {'quiet p50':>9} {'p99 alone':>9} {'p99 w/ loud':>11} {'ratio':>6} {'quiet err':>9} "
         f"{'quiet rej':>9} {'loud ok':>7} {'loud p99':>8} {'loud rej':>8} {'loud err':>8}")
    for column in ("before", "after"):
        keys = column == "after" or knows_slots(ensure_before())  # the release with slots had client keys
        key = {n: k for k, n in KEYS.items()} if keys else {n: None for n in KEYS.values()}
        with cluster(column, keys=keys) as (url, _):
            warm(url, key["quiet-a"])  # not loud: "alone" means no loud client used the model lately
            alone, mixed = [], []
            for seed in seeds:
                alone += asyncio.run(poisson_chats(url, [("quiet-a", r, key["quiet-a"]),
                                                         ("quiet-b", r, key["quiet-b"])], seconds, seed))
            for seed in seeds:
                mixed += asyncio.run(poisson_chats(url, [("quiet-a", r, key["quiet-a"]), ("quiet-b", r, key["quiet-b"]),
                                                         ("loud", 10 * r, key["loud"])], seconds, seed))
        qa = summary(alone)
        qm = summary([a for a in mixed if a.tag != "loud"])
        ld = summary([a for a in mixed if a.tag == "loud"])
        ratio = qm["p99"] / qa["p99"] if qa["p99"] else float("nan")
        line(f"  {column:<7} {qm['p50']:>9.0f} {qa['p99']:>9.0f} {qm['p99']:>11.0f} {ratio:>6.2f} "
             f"{qa['errors'] + qm['errors']:>9} {qm['rejected']:>9} {ld['ok']:>7} {ld['p99']:>8.0f} "
             f"{ld['rejected']:>8} {ld['errors']:>8}  {error_kinds(alone + mixed)}")
        if column == "after":
            line(f"    after: quiet p99 ratio {ratio:.2f} (target <= 1.5) {verdict(ratio <= 1.5, 'fair: quiet p99')}")
        elif not keys:
            line("    before: no client keys then; the three clients are one to the gateway")


def main() -> int:
    global BEFORE_COMMIT
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, shorter windows")
    parser.add_argument("--only", default="sweep,batch,fair", help="comma-separated: sweep, batch, fair")
    parser.add_argument("--before", default=BEFORE_COMMIT, help=f"the older tree (default {BEFORE_COMMIT})")
    args = parser.parse_args()
    BEFORE_COMMIT = args.before
    only = set(args.only.split(","))
    seeds = [1] if args.quick else [1, 2, 3]
    t0 = time.perf_counter()
    ensure_before()
    line(f"before = {BEFORE_COMMIT} (worktree {ensure_before()}); after = this tree ({REPO})")
    if "sweep" in only:
        sweep(seeds, 5.0 if args.quick else 8.0)
    if "batch" in only:
        batch_scenario(seeds, 6.0 if args.quick else 8.0, 8.0 if args.quick else 12.0, 20000)
    if "fair" in only:
        fairness(seeds, 6.0 if args.quick else 8.0)
    line(f"\n{time.perf_counter() - t0:.0f} s in all; " + ("all targets met" if not MISSED else
                                                          "targets missed: " + "; ".join(MISSED)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
