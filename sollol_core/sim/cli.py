"""``python -m sollol_core.sim``: simulated nodes in their own process (benchmarks use this)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Optional

from .server import SimNode
from .spec import SimNodeSpec, demo_specs, spec_from_json


async def _serve(specs: list[SimNodeSpec]) -> None:
    nodes = [SimNode(s) for s in specs]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for node in nodes:
            await node.start()
            print(f"SIM {node.spec.name} {node.address}")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


def main(argv: Optional[list[str]] = None) -> None:
    """`python -m sollol_core.sim --spec '{"name":"fast","latency_ms":20,"capacity":64}' [--spec ...]`:
    runs nodes in this process (the demo set when no --spec), prints ``SIM <name> 127.0.0.1:PORT``
    per node, and runs until SIGTERM/SIGINT (exit 0)."""
    parser = argparse.ArgumentParser(prog="python -m sollol_core.sim",
                                     description="Simulated Ollama servers on 127.0.0.1.")
    parser.add_argument("--spec", action="append", default=[], metavar="JSON",
                        help="a JSON object of SimNodeSpec fields; repeat for more nodes")
    args = parser.parse_args(argv)
    try:
        specs = [spec_from_json(s) for s in args.spec] or demo_specs()
    except (ValueError, TypeError) as exc:
        parser.error(f"--spec: {exc}")
    asyncio.run(_serve(specs))
