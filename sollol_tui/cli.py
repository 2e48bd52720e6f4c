"""The `sollol` command line.

    sollol [flags]          the dashboard (headless when --no-ui)
    sollol up [flags]       the same
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
import urllib.request
from typing import Any, Optional, Sequence

from sollol_core import SOLLOL, ConfigError, StartupError, __version__, load_config
from sollol_core.config import STRATEGIES, HostSettings, SollolConfig, parse_hosts_arg

DEFAULT_OLLAMA = "127.0.0.1:11434"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sollol",
        description="One Ollama-compatible URL in front of many Ollama servers, routed on live measurements. "
                    "Without hosts configured and no Ollama at 127.0.0.1:11434 it starts on a simulated cluster.",
        epilog="Settings come from defaults < sollol.toml < SOLLOL_* environment variables < these flags. "
               "`sollol up [flags]` means the same as `sollol [flags]`.",
    )
    p.add_argument("command", nargs="?", choices=["up"], help="optional; `up` is the same as no command")
    p.add_argument("--version", action="version", version=f"sollol {__version__}")
    p.add_argument("--config", metavar="PATH", help="TOML config file (default: ./sollol.toml, then "
                                                    "~/.config/sollol/sollol.toml)")
    p.add_argument("--hosts", metavar="FILE|LIST", help="hosts file (one host:port a line) or host:port,host:port")
    p.add_argument("--host", dest="gateway_host", metavar="ADDR",
                   help="address the gateway binds (default 127.0.0.1; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", dest="gateway_port", type=int, metavar="N", help="gateway port (default 8000)")
    p.add_argument("--metrics-port", type=int, metavar="N", help="Prometheus metrics port (default 9090)")
    p.add_argument("--strategy", dest="routing_strategy", choices=STRATEGIES, help="routing strategy "
                                                                                   "(default performance)")
    p.add_argument("--executor", choices=["async", "ray"], help="where upstream calls run (default async)")
    p.add_argument("--workers", dest="ray_workers", type=int, metavar="N", help="Ray actors (default 2)")
    p.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (e.g. 10.0.0.1:6379) instead of "
                                                         "starting a local one")
    p.add_argument("--dask-workers", type=int, metavar="N", help="local Dask workers (default 2)")
    p.add_argument("--dask-scheduler", metavar="ADDR", help="external Dask scheduler, e.g. tcp://10.0.0.1:8786")
    p.add_argument("--autobatch", dest="autobatch_enabled", action=argparse.BooleanOptionalAction, default=None,
                   help="autonomous batch processing (default on)")
    p.add_argument("--autobatch-interval", type=float, metavar="S", help="seconds between batches (default 60)")
    p.add_argument("--batch-db", metavar="PATH", help="SQLite file of the batch queue (default sollol-batch.db)")
    p.add_argument("--adaptive-metrics", dest="adaptive_metrics_enabled", action=argparse.BooleanOptionalAction,
                   default=None, help="adaptive metrics loop (default on)")
    p.add_argument("--adaptive-metrics-interval", type=float, metavar="S",
                   help="seconds between adaptive metrics rounds (default 30)")
    p.add_argument("--log-file", metavar="PATH", help="log file while the dashboard runs (default sollol.log)")
    p.add_argument("--demo", action="store_true", help="run on four simulated Ollama nodes on 127.0.0.1")
    p.add_argument("--no-ui", action="store_true", help="run headless: log to stderr, stop with Ctrl-C/SIGTERM")
    return p


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("gateway_host", "gateway_port", "metrics_port", "routing_strategy", "executor", "ray_workers", "ray_address",
            "dask_workers", "dask_scheduler", "autobatch_enabled", "autobatch_interval", "batch_db",
            "adaptive_metrics_enabled", "adaptive_metrics_interval", "log_file")
    out = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    if args.hosts:
        hosts, hosts_file = parse_hosts_arg(args.hosts)
        out["hosts"] = hosts
        out["hosts_file"] = hosts_file
    return out


def ollama_answers(address: str, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/api/version", timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


def setup_logging(headless: bool, log_file: str) -> None:
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if headless:
        logging.basicConfig(level=logging.INFO, format=fmt, stream=sys.stderr)
    else:
        logging.basicConfig(level=logging.INFO, format=fmt, filename=log_file)
    for noisy in ("aiohttp.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def prepare(args: argparse.Namespace, warnings: Optional[list[str]] = None) -> tuple[SollolConfig, Optional[str], Any]:
    """Config from every source, and a simulated cluster when asked for (or when nothing else is there).
    What the environment had that names no setting goes to `warnings`."""
    config, path = load_config(args.config, overrides=overrides_from(args), warnings=warnings)
    sim = None
    demo = args.demo
    if not demo and not config.all_hosts():
        if ollama_answers(DEFAULT_OLLAMA):
            config.hosts = [DEFAULT_OLLAMA]
        else:
            print(f"sollol: no hosts configured and no Ollama answers at {DEFAULT_OLLAMA}: "
                  f"starting on a simulated cluster (--demo). Give real hosts with --hosts or sollol.toml.",
                  file=sys.stderr)
            demo = True
    if demo:
        from sollol_core.sim import SimCluster, demo_specs

        sim = SimCluster(demo_specs()).start()
        config.hosts = list(sim.addresses)
        config.hosts_file = None
        # the simulated nodes' slots are known: the gateway holds them to it, as an operator would
        config.host_settings = {node.address: HostSettings(num_parallel=node.spec.num_parallel)
                                for node in sim.nodes if node.spec.num_parallel}
    return config, (str(path) if path else None), sim


def demo_labels(sim: Any) -> dict[str, str]:
    if sim is None:
        return {}
    return {node.address: f"simulated {node.spec.name}" for node in sim.nodes}


def demo_clients(sim: Any, gateway_url: str) -> Any:
    """Simulated users of the demo: multi-turn chats and agent sessions sharing system prompts, so
    cache-aware routing is seen at work (`c` on the dashboard starts and stops them)."""
    from sollol_core.sim import SimClients

    chat_models = sorted({m for node in sim.nodes for m in node.spec.models if "embed" not in m})
    return SimClients(gateway_url, chat_models)


def run_headless(sollol: SOLLOL) -> int:
    stop = threading.Event()
    # what exists after start-up lives as long as the process: keep it out of the collector's full passes,
    # which otherwise pause every thread, the gateway's included, for ~100 ms at a time
    gc.freeze()

    def on_signal(signum: int, _frame: Any) -> None:
        logging.getLogger("sollol").info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.wait(0.5):
        if not sollol.running:
            return 1
    sollol.stop()
    return 0


def run_dashboard(app_factory: Any, sollol: SOLLOL) -> int:
    """Run the dashboard with descriptors 1 and 2 on the log file, so nothing draws over it.

    The app quits gracefully on q, ctrl+q, SIGTERM and SIGHUP (it installs those handlers in its loop),
    stopping the gateway first; the terminal is restored either way.
    """
    from sollol_tui.terminal import give_captures_descriptors, output_to_log

    with output_to_log(sollol.config.log_file) as redirected:
        app = app_factory(sollol, exit_on_signals=True, freeze_gc=True)
        if redirected:  # ray.init() and Dask's Nanny need sys.stdout/stderr with real descriptors
            give_captures_descriptors(app)
        result = app.run()
    if app.return_code not in (0, None):
        print(f"sollol: the dashboard ended with an error; see {sollol.config.log_file}", file=sys.stderr)
        return app.return_code
    return result if isinstance(result, int) else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    warnings: list[str] = []
    try:
        config, path, sim = prepare(args, warnings)
    except ConfigError as e:
        print(f"sollol: configuration error: {e}", file=sys.stderr)
        return 2
    headless = args.no_ui
    app_factory = None
    if not headless:
        try:
            from sollol_tui.app import SollolApp as app_factory  # noqa: N813
        except ImportError:
            print("sollol: the dashboard is not available in this build; running headless (--no-ui).",
                  file=sys.stderr)
            headless = True
    setup_logging(headless, config.log_file)
    sollol = SOLLOL(config, host_labels=demo_labels(sim), demo=sim is not None, config_path=path,
                    config_warnings=warnings)
    try:
        try:
            sollol.start()
        except StartupError as e:
            print(f"sollol: {e}", file=sys.stderr)
            return 1
        if sim is not None:
            clients = demo_clients(sim, sollol.gateway_url)
            sollol.attach_sim_clients(clients)
            clients.start()
        if headless:
            print(f"sollol: gateway on {sollol.gateway_url} ({len(sollol.registry)} hosts, "
                  f"strategy {sollol.router.strategy_name}); Ctrl-C stops", file=sys.stderr, flush=True)
            return run_headless(sollol)
        return run_dashboard(app_factory, sollol)
    finally:
        if sollol.sim_clients is not None:
            sollol.sim_clients.stop()
        sollol.stop()
        if sim is not None:
            sim.stop()


if __name__ == "__main__":
    sys.exit(main())
