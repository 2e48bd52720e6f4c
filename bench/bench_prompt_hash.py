"""Cost of the canonical prompt on the event loop: canonical_text + prompt_key for 2 KB, 20 KB and 200 KB
prompts (p50 and p90 over repetitions), the hashing alternatives it was chosen from, what a match against a
host's shadow costs, and how long the loop is held when a 200 KB key is made inline or by prompt_key_async.

    python bench/bench_prompt_hash.py [--reps N]

Prints figures only; nothing here is asserted (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import statistics
import time
from array import array

from sollol_core.config import CacheSettings
from sollol_core.prompt_cache.canonical import canonical_text, extend_with_answer, prompt_key, prompt_key_async
from sollol_core.prompt_cache.key import chain_blocks
from sollol_core.prompt_cache.shadow import CacheShadow

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches of "
         "sphinx and quartz under the black vow").split()


def prose(n: int, rnd: random.Random) -> str:
    out, size = [], 0
    while size < n:
        w = rnd.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n]


def conversation(total: int, rnd: random.Random) -> dict:
    """A chat of about `total` characters: a system prompt, a long document, then turns."""
    doc = prose(int(total * 0.7), rnd)
    msgs = [{"role": "system", "content": "You are a careful assistant. Answer from the document."},
            {"role": "user", "content": "Document:\n" + doc}]
    rest = total - len(doc)
    while rest > 0:
        q, a = prose(min(200, rest), rnd), prose(min(400, rest), rnd)
        msgs += [{"role": "assistant", "content": a}, {"role": "user", "content": q}]
        rest -= len(q) + len(a)
    return {"model": "llama3.2", "messages": msgs, "stream": True, "options": {"temperature": 0.2, "num_ctx": 8192},
            "tools": [{"type": "function", "function": {"name": "search", "description": "Search the document",
                                                        "parameters": {"type": "object", "properties": {
                                                            "q": {"type": "string"}}}}}]}


def p(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def timeit(fn, reps: int) -> tuple[float, float]:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6, p(samples, 0.9) * 1e6


def blake2b_chain(text: str, bc: int) -> array:
    h = hashlib.blake2b(digest_size=8)
    out = []
    for i in range(0, len(text), bc):
        h.update(text[i:i + bc].encode())
        out.append(int.from_bytes(h.copy().digest(), "little", signed=True))
    return array("q", out)


async def loop_hold(data: dict, how: str) -> tuple[float, int]:
    """Longest gap between ticks of a ticker that only yields (sleep(0)) while one key is made (ms), and
    the ticks seen."""
    gaps: list[float] = []
    stop = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.005)
    gaps.clear()
    if how == "async":
        await prompt_key_async("/api/chat", data)
    elif how == "thread":
        await asyncio.to_thread(prompt_key, "/api/chat", data)
    else:
        prompt_key("/api/chat", data)
    stop = True
    await task
    return max(gaps) * 1e3, len(gaps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    rnd = random.Random(7)
    print(f"canonical_text + prompt_key, block_chars=128, p50 / p90 over {args.reps} repetitions (microseconds)")
    print(f"{'prompt':>8} {'chars':>8} {'text':>14} {'text+key':>16} {'key/KB':>8} {'blake2b chain':>14}"
          f" {'extend(400)':>12}")
    datas = {}
    for size in (2_000, 20_000, 200_000):
        data = conversation(size, rnd)
        datas[size] = data
        text = canonical_text("/api/chat", data)
        reps = args.reps if size < 100_000 else max(20, args.reps // 4)
        t50, t90 = timeit(lambda: canonical_text("/api/chat", data), reps)
        k50, k90 = timeit(lambda: prompt_key("/api/chat", data), reps)
        b50, _ = timeit(lambda: blake2b_chain(text, 128), reps)
        key = prompt_key("/api/chat", data)
        answer = prose(400, rnd)
        e50, _ = timeit(lambda: extend_with_answer(key, answer), reps)
        print(f"{size // 1000:>6}KB {len(text):>8} {t50:>6.0f} /{t90:>6.0f} {k50:>7.0f} /{k90:>7.0f}"
              f" {k50 / (len(text) / 1000):>8.1f} {b50:>14.0f} {e50:>12.1f}")
        c50, _ = timeit(lambda: chain_blocks(text, 128), reps)
        print(f"{'':>8} {'':>8} (the chained hash alone: {c50:.0f} us, {c50 / (len(text) / 1000):.2f} us/KB)")

    # a match against a host whose 4 slots hold other conversations, and one that extends slot 0
    shadow = CacheShadow(CacheSettings(displaced_per_host=64))
    keys = [prompt_key("/api/chat", conversation(20_000, rnd)) for _ in range(4)]
    for k in keys:
        shadow.complete(shadow.place("h", k, 4))
    probe = prompt_key("/api/chat", datas[20_000])
    m50, m90 = timeit(lambda: shadow.match("h", probe, 4), args.reps)
    print(f"\nCacheShadow.match, 4 slots + displaced, 20 KB prompt: p50 {m50:.1f} us, p90 {m90:.1f} us")
    pl50, _ = timeit(lambda: shadow.complete(shadow.place("h", probe, 4), answer=probe), args.reps)
    print(f"CacheShadow.place + complete: p50 {pl50:.1f} us")

    print("\nLoop held while one 200 KB key is made (longest gap of a yielding ticker, ms, over 30 runs):")
    for label, how in (("inline prompt_key", "inline"), ("whole prompt_key in a thread", "thread"),
                       ("prompt_key_async (pieces)", "async")):
        runs = [asyncio.run(loop_hold(datas[200_000], how)) for _ in range(30)]
        gaps = sorted(g for g, _ in runs)
        ticks = statistics.median(n for _, n in runs)
        print(f"  {label:<30} median {gaps[15]:5.2f}  p90 {gaps[27]:5.2f}  max {gaps[-1]:5.2f}"
              f"   (ticks per key: {ticks:.0f})")


if __name__ == "__main__":
    main()
