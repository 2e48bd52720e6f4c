"""Basic use of SOLLOL from Python: start it, send requests through it, read its status, stop it.

    python examples/basic_usage.py --hosts 127.0.0.1:11434,10.0.0.2:11434
    python examples/basic_usage.py            # no hosts: runs on simulated Ollama nodes on 127.0.0.1
"""

from __future__ import annotations

import argparse

import ollama

from sollol_core import SOLLOL, SOLLOLConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", help="comma-separated host:port list (default: simulated nodes)")
    ap.add_argument("--port", type=int, default=8000, help="gateway port (0: any free port)")
    ap.add_argument("--model", default="llama3.2")
    args = ap.parse_args()

    sim = None
    if args.hosts:
        hosts = args.hosts.split(",")
    else:
        from sollol_core.sim import SimCluster, demo_specs

        sim = SimCluster(demo_specs()).start()
        hosts = sim.addresses
        print(f"no --hosts given: using {len(hosts)} simulated nodes")

    # Default settings: performance routing, health checks, adaptive metrics, Prometheus on 9090.
    config = SOLLOLConfig(hosts=hosts, gateway_port=args.port, metrics_port=0)
    sollol = SOLLOL(config)
    sollol.start(blocking=False)  # returns as soon as the gateway listens
    try:
        status = sollol.get_status()
        print(f"running: {status['running']} at {status['gateway_url']} with {status['hosts']} hosts")

        client = ollama.Client(host=status["gateway_url"])  # any Ollama client works unchanged
        answer = client.chat(model=args.model, messages=[{"role": "user", "content": "Say hello"}])
        print("chat answer:", answer["message"]["content"])
        streamed = "".join(part["message"]["content"] for part in
                           client.chat(model=args.model, messages=[{"role": "user", "content": "Count"}], stream=True))
        print("streamed answer:", streamed)

        health = sollol.get_health()
        print(f"health: {health['status']} ({health['hosts_available']}/{health['hosts_total']} hosts available)")
        for host in sollol.get_stats()["hosts"]:
            print(f"  {host['host']:<22} {host['state']:<10} score {host['score']:.4f} "
                  f"latency {host['latency_ms']:.1f} ms, {host['requests_total']} requests")
    finally:
        sollol.stop()
        if sim is not None:
            sim.stop()
    print("stopped")


if __name__ == "__main__":
    main()
