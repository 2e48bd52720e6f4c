"""Where one request's time goes inside the gateway at concurrency 1, stage by stage.

    python bench/profile_c1.py [--requests 300]

The gateway runs in this process (built as `sollol` builds it) on two 20 ms simulated nodes in their own
process; a client in a third process sends `/api/chat` requests one at a time, all on 127.0.0.1. Each stage
boundary is stamped with time.perf_counter by a wrapper around the function that begins it, and the p50 of
each step is printed, from the request's first bytes to the end of its books. At c=1 the gateway sleeps
between requests while the client and the node run, so every step pays for cold caches: compare with the
CPU a request costs at c=16 (bench_gateway.py). A profile, not a benchmark: nothing is compared or asserted.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import PY, sim_process  # noqa: E402

from sollol_core import SOLLOL, SollolConfig  # noqa: E402
from sollol_core.http import access, server  # noqa: E402
from sollol_core.http.inference import Inference  # noqa: E402
from sollol_core.request.admission import GatewayQueue  # noqa: E402
from sollol_core.request.attempt import Attempt  # noqa: E402
from sollol_core.request.books import Books  # noqa: E402
from sollol_core.request.path import RequestPath  # noqa: E402
from sollol_core.request.placement import Placement  # noqa: E402
from sollol_core.sim import SimNodeSpec  # noqa: E402
from sollol_core.upstream import pool  # noqa: E402

CLIENT = r"""
import sys
sys.path.insert(0, sys.argv[3])
from common import closed_loop, run
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}
run(closed_loop(sys.argv[1] + "/api/chat", CHAT, 1, count=int(sys.argv[2])))
"""

# (class, method, step name), in the order a request meets them
STEPS: list[tuple[Any, str, str]] = [
    (server._Connection, "data_received", "request bytes in"),
    (server._Connection, "_start", "head parsed, task made"),
    (server._Connection, "_answer", "task runs"),
    (access.DeclaredRoute, "admit", "guard"),
    (Inference, "forward", "body read and parsed, the Call made"),
    (RequestPath, "forward", "the request path"),
    (GatewayQueue, "admit", "the queue"),
    (Placement, "decide", "placement"),
    (GatewayQueue, "_grant", "the slot granted"),
    (Attempt, "open", "the attempt"),
    (pool._Connection, "send", "sent upstream"),
    (pool._Connection, "data_received", "the host's answer in"),
    (server._Connection, "write", "written to the client"),
    (Books, "record", "usage read, the attempt booked"),
]
LAST = "the request logged (its books end)"  # stamped when Books.record returns


def stamped(f: Callable[..., Any], marks: list[float], ended: Optional[list[float]] = None) -> Callable[..., Any]:
    """`f`, stamping `marks` when it is entered (and `ended` when it returns)."""
    if inspect.iscoroutinefunction(f):
        @functools.wraps(f)
        async def wrapper(*a: Any, **k: Any) -> Any:
            marks.append(time.perf_counter())
            return await f(*a, **k)
    else:
        @functools.wraps(f)
        def wrapper(*a: Any, **k: Any) -> Any:
            marks.append(time.perf_counter())
            try:
                return f(*a, **k)
            finally:
                if ended is not None:
                    ended.append(time.perf_counter())
    return wrapper


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=300, help="requests measured (default 300)")
    opts = ap.parse_args()
    marks: dict[str, list[float]] = {name: [] for _, _, name in STEPS}
    marks[LAST] = []
    for cls, method, name in STEPS:
        setattr(cls, method, stamped(getattr(cls, method), marks[name], marks[LAST] if cls is Books else None))
    here = os.path.dirname(os.path.abspath(__file__))
    specs = [SimNodeSpec(name=n, latency_ms=20, capacity=64, tokens=1, tokens_per_s=0) for n in ("a", "b")]
    with sim_process(specs) as nodes:
        sollol = SOLLOL(SollolConfig(hosts=nodes, gateway_host="127.0.0.1", gateway_port=0, metrics_port=0,
                                     adaptive_metrics_enabled=False)).start()
        try:
            subprocess.run([PY, "-c", CLIENT, sollol.gateway_url, "100", here], check=True)  # warm
            time.sleep(0.2)
            for m in marks.values():
                m.clear()
            subprocess.run([PY, "-c", CLIENT, sollol.gateway_url, str(opts.requests), here], check=True)
        finally:
            sollol.stop()
    counts = {name: len(m) for name, m in marks.items()}
    n = min(counts.values())
    if n == 0 or max(counts.values()) != n:
        print(f"profile_c1: each step should be met once a request (a health check through the pool meanwhile "
              f"adds one: run it again); counts: {counts}", file=sys.stderr)
        return 1
    print(f"{n} requests at c=1 on two 20 ms simulated nodes; p50 of each step, in microseconds")
    names = [name for _, _, name in STEPS] + [LAST]
    total = 0.0
    for a, b in zip(names, names[1:]):
        step = statistics.median((marks[b][i] - marks[a][i]) * 1e6 for i in range(n))
        if b != "the host's answer in":
            total += step
        print(f"  {a:>38} -> {b:<38} {step:8.1f}")
    print(f"  in the gateway, the host's time left out: {total:.0f} us (sum of the p50s; the books run after "
          f"the write, while the client reads its answer)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
