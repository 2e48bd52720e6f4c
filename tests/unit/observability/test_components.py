"""ComponentBoard, and the Prometheus families Views reads from the parts (observability knows no cluster)."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import sollol_core.observability as observability
from sollol_core.config import SollolConfig
from sollol_core.observability.components import ComponentBoard
from sollol_core.observability.snapshot import ComponentState
from sollol_core.views import Views
from sollol_core.wiring import build


def test_board_keeps_the_last_state_of_each_component_in_first_seen_order() -> None:
    board = ComponentBoard()
    board.set("gateway", "ready", "http://127.0.0.1:8000")
    board.set("dask", "starting")
    board.set("dask", "failed", "timed out")
    assert board.view() == (ComponentState("gateway", "ready", "http://127.0.0.1:8000"),
                            ComponentState("dask", "failed", "timed out"))
    assert board.get("dask") == ComponentState("dask", "failed", "timed out") and board.get("ray") is None
    assert board.as_dict() == {"gateway": {"state": "ready", "detail": "http://127.0.0.1:8000"},
                               "dask": {"state": "failed", "detail": "timed out"}}


def test_board_reads_while_another_thread_writes() -> None:
    board = ComponentBoard()
    done = threading.Event()

    def write() -> None:
        for i in range(20000):
            board.set(f"c{i % 500}", "ready")
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        assert all(c.state == "ready" for c in board.view())
    writer.join()
    assert len(board) == 500


def test_views_collect_host_gauges_and_queue_slot_cache_families() -> None:
    parts = build(SollolConfig(hosts=["a:1", "b:1"], default_num_parallel=2))
    parts.metrics.add_collector(Views(parts).collect)
    parts.registry.record_success("a:1", 12.0, model="llama3.2")
    parts.slots.acquire("a:1", "llama3.2")
    text = parts.metrics.exposition().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    latency = {s.labels["host"]: s.value for s in families["sollol_host_latency_ms"].samples}
    assert latency == {"a:1": 12.0, "b:1": 0.0}
    up = {(s.labels["host"], s.labels["state"]): s.value for s in families["sollol_host_available"].samples}
    assert up == {("a:1", "healthy"): 1.0, ("b:1", "healthy"): 1.0}
    assert [(s.labels, s.value) for s in families["sollol_slots_in_use"].samples] == \
        [({"host": "a:1", "model": "llama3.2:latest"}, 1.0)]
    assert "sollol_queue_depth" in families and "sollol_queue_requests" in families


def test_observability_imports_nothing_of_cluster() -> None:
    package = Path(observability.__file__).parent
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom):
                name = ("." * node.level) + (node.module or "")
                assert "cluster" not in name, f"{module.name} imports {name}"
