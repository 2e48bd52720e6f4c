"""Where the fast lane's CPU goes: py-spy samples the gateway (`sollol --no-ui`, its own process) while a
client keeps 16 `/api/chat` requests in flight on two 20 ms simulated nodes, all on 127.0.0.1; prints the
functions with the largest shares of the busy samples, inclusive and self.
    python bench/profile_lane.py [--root TREE] [--seconds 10] [--by-function] [--keep FILE]
--root: an older source tree (a git worktree) to profile instead of this one, for a side-by-side reading.
Needs py-spy (`pip install -e ".[bench]"`); a profile, not a benchmark: nothing is compared or asserted.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import closed_loop, gateway_process, run, sim_process  # noqa: E402

from sollol_core.sim import SimNodeSpec  # noqa: E402

CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def idle(frames: list[str]) -> bool:
    """A sample of the event loop waiting for I/O (not work)."""
    leaf = frames[-1]
    return "epoll" in leaf or "select (selectors" in leaf or leaf.startswith("select ")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=None, help="an older source tree to profile instead of this one")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long py-spy samples (default 10)")
    ap.add_argument("--top", type=int, default=40, help="rows of each table (default 40)")
    ap.add_argument("--by-function", action="store_true", help="aggregate by function, not by line")
    ap.add_argument("--keep", default=None, help="also copy py-spy's raw samples to this file")
    opts = ap.parse_args()
    if shutil.which("py-spy") is None:
        print("profile_lane: py-spy is not installed (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    specs = [SimNodeSpec(name=n, latency_ms=20, capacity=64, tokens=1, tokens_per_s=0) for n in ("a", "b")]
    with tempfile.TemporaryDirectory() as tmp, sim_process(specs) as nodes, \
            gateway_process(nodes, "--no-adaptive-metrics", root=opts.root) as gw:
        raw = os.path.join(tmp, "samples.txt")
        run(closed_loop(gw.url + "/api/chat", CHAT, 4, count=300))  # warm: connections, code paths
        spy = subprocess.Popen(["py-spy", "record", "-p", str(gw.proc.pid), "-d", str(int(opts.seconds)),
                                "-r", "200", "-f", "raw", "-o", raw, "--nonblocking",
                                *(["--function"] if opts.by_function else [])],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches
        served, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < opts.seconds - 1:
            served += run(closed_loop(gw.url + "/api/chat", CHAT, 16, count=500)).count
        spy.wait()
        if opts.keep:
            shutil.copyfile(raw, opts.keep)
        inclusive: collections.Counter[str] = collections.Counter()
        own: collections.Counter[str] = collections.Counter()
        busy = 0
        with open(raw) as f:
            for row in f:
                stack, _, count = row.rstrip().rpartition(" ")
                frames = stack.split(";")
                if not frames or idle(frames):
                    continue
                n = int(count)
                busy += n
                own[frames[-1]] += n
                for frame in set(frames):
                    inclusive[frame] += n
    print(f"tree: {opts.root or 'this tree'}; {served} requests at c=16; {busy} busy samples at 200 Hz")
    for title, table in (("inclusive", inclusive), ("self", own)):
        print(f"--- {title}")
        for frame, n in table.most_common(opts.top):
            print(f"{100 * n / max(1, busy):5.1f}%  {frame[:140]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
