"""Embedding SOLLOL inside an application: the app owns the balancer's lifecycle, sends its model traffic
through it, and steers it at run time (weights, draining a host for maintenance).

    python examples/application_integration.py --hosts 127.0.0.1:11434,10.0.0.2:11434
    python examples/application_integration.py      # no hosts: simulated Ollama nodes on 127.0.0.1
"""

from __future__ import annotations

import argparse
from typing import Optional

import httpx

from sollol_core import SOLLOL, SOLLOLConfig


class ResearchAssistant:
    """A small application that needs chat and embeddings from a cluster of Ollama servers."""

    def __init__(self, hosts: list[str], port: int = 8000) -> None:
        self.sollol = SOLLOL(SOLLOLConfig(hosts=hosts, gateway_port=port, metrics_port=0,
                                          routing_strategy="performance", max_retries=3))
        self.http: Optional[httpx.Client] = None

    def __enter__(self) -> "ResearchAssistant":
        self.sollol.start(blocking=False)
        self.http = httpx.Client(base_url=self.sollol.gateway_url, timeout=60, trust_env=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.http is not None:
            self.http.close()
        self.sollol.stop()

    def embed(self, texts: list[str], model: str = "nomic-embed-text") -> list[list[float]]:
        r = self.http.post("/api/embed", json={"model": model, "input": texts})
        r.raise_for_status()
        return r.json()["embeddings"]

    def ask(self, question: str, model: str = "llama3.2") -> str:
        r = self.http.post("/api/chat", json={"model": model, "stream": False,
                                              "messages": [{"role": "user", "content": question}]})
        r.raise_for_status()
        return r.json()["message"]["content"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", help="comma-separated host:port list (default: simulated nodes)")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    sim = None
    if args.hosts:
        hosts = args.hosts.split(",")
    else:
        from sollol_core.sim import SimCluster, demo_specs

        sim = SimCluster(demo_specs()).start()
        hosts = sim.addresses
        print(f"no --hosts given: using {len(hosts)} simulated nodes")
    try:
        with ResearchAssistant(hosts, args.port) as app:
            vectors = app.embed(["solar panels", "wind turbines", "tidal power"])
            print(f"embedded {len(vectors)} texts, {len(vectors[0])} dimensions each")
            print("answer:", app.ask("What is renewable energy?"))

            # favour latency more strongly, live
            result = app.sollol.update_config(routing_weights={"latency": 0.6})
            print("update_config:", result)
            # take the first host out for maintenance: it finishes what it holds, takes nothing new
            first = hosts[0]
            app.sollol.drain_host(first)
            for _ in range(4):
                app.ask("Still there?")
            served = {r.host for r in app.sollol.recent_requests(4)}
            print(f"while {first} drains, requests went to: {', '.join(sorted(served))}")
            app.sollol.undrain_host(first)
            print("stats:", {h["host"]: h["state"] for h in app.sollol.get_stats()["hosts"]})
    finally:
        if sim is not None:
            sim.stop()


if __name__ == "__main__":
    main()
