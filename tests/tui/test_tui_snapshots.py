"""Screenshots of the main screen at 80×24 and 120×40 (pytest-textual-snapshot).

The picture must be the same run after run, so the app renders one frozen ClusterSnapshot (no poll timer,
no live feeds). That snapshot is taken from a real SOLLOL over a fixed four-node simulated cluster whose
statistics are fed through the registry's own API, so host views and score terms are computed by the core;
the registry reads a pinned clock (what fades with time, like the success rate since the last failure, is the
same however long the test takes), and what the snapshot takes from elsewhere (URL port, uptime, rates,
request times) is pinned afterwards.
Regenerate with ``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from textual.widgets import TabbedContent

from sollol_core import SOLLOL, SollolConfig
from sollol_core.observability.snapshot import (
    BatchJobView,
    BatchView,
    CacheView,
    ClientView,
    ClusterSnapshot,
    ComponentState,
    QueueView,
    RequestRecord,
)
from sollol_tui.app import SollolApp
from sollol_tui.themes import bundled_theme_dir

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
CLOCK_S = 86_400.0  # the registry's monotonic clock, pinned: a day after boot
NODES = [  # address, label, latency ms, ttft ms, tokens/s, requests, failures, cpu, loaded models
    ("127.0.0.1:11501", "simulated fast", 31.0, 12.0, 118.0, 1204, 0, 0.22, ("llama3.2", "qwen2.5:0.5b")),
    ("127.0.0.1:11502", "simulated medium", 124.0, 41.0, 58.5, 402, 1, 0.41, ("llama3.2",)),
    ("127.0.0.1:11503", "simulated slow", 612.0, 180.0, 19.8, 96, 0, 0.83, ("llama3.2",)),
    ("127.0.0.1:11504", "simulated flaky", 44.0, 15.0, 88.0, 640, 96, 0.35, ("nomic-embed-text",)),
]


def frozen_snapshot() -> tuple[SOLLOL, ClusterSnapshot]:
    config = SollolConfig(hosts=[n[0] for n in NODES], gateway_port=0, metrics_enabled=False,
                          health_check_enabled=False, adaptive_metrics_enabled=False)
    core = SOLLOL(config, host_labels={n[0]: n[1] for n in NODES}, demo=True)
    reg = core.registry
    reg.clock = lambda: CLOCK_S
    for i, (address, _label, _latency, _ttft, _tps, _ok, _failed, cpu, loaded) in enumerate(NODES):
        reg.update_models(address, ["llama3.2", "qwen2.5:0.5b", "nomic-embed-text"], loaded)
        reg.update_load(address, cpu, 8192.0 - 2048 * i if i < 3 else None)
    for second in range(90):  # one sparkline sample a second: a slow wave per host, some busier seconds
        for i, (address, _label, latency, ttft, tps, *_rest) in enumerate(NODES):
            wave = ((second + 7 * i) % 30) / 30
            for _ in range(1 + (second + 3 * i) % 4):
                reg.record_success(address, latency * (0.7 + 0.6 * wave), ttft_ms=ttft, tokens=24, eval_s=24 / tps)
        reg.tick_history()
    for address, _label, _latency, _ttft, _tps, ok, failed, *_rest in NODES:
        h = reg.get(address)
        h.requests_total, h.failures_total = ok, failed
    reg.record_failure(NODES[3][0], "simulated failure (HTTP 500)")
    reg.drain(NODES[2][0])
    core.set_priority(NODES[1][0], 1)
    core.set_weight(NODES[0][0], 2.0)
    base = core.snapshot()
    models = ["llama3.2", "qwen2.5:0.5b", "nomic-embed-text"]
    records = []
    for k in range(40):
        node = NODES[k % 4]
        failed = k % 9 == 4
        embed = k % 3 == 2
        cached = not embed and k % 4 != 3
        placement = (f"cached {80 + k % 19}% ({6 + k % 4}.{k % 10}k of 8.7k chars), est. 0.0{k % 9 + 1} s"
                     if cached else "cold; balanced")
        records.append(RequestRecord(
            time=T0 + 3600 * 9 + k * 0.25, endpoint="/api/embed" if embed else "/api/chat",
            model=models[2] if embed else models[k % 2], host=node[0], status=500 if failed else 200,
            latency_ms=node[2] * (1 + (k % 5) / 10), tokens=None if embed or failed else 24 + k % 7, retries=0,
            error="simulated failure" if failed else None, placement=placement,
            wait_ms=0.0 if k % 3 else 12.5 * (k % 7 + 1), priority="batch" if embed else "interactive",
            client=("chat-3", "agent-1", "10.0.0.7")[k % 3]))
    slots = [(4, 3, (("llama3.2", 2, 4), ("qwen2.5:0.5b", 1, 4))), (2, 2, (("llama3.2", 2, 2),)),
             (1, 0, ()), (None, 1, (("nomic-embed-text", 1, None),))]
    caches = [CacheView(0.93, 81.4, 8, 5310, 42480, 0.27, 412, 398, 3),
              CacheView(0.61, 12.0, 2, 880, 7040, 0.81, 95, 80, 9),
              CacheView(None, 0.0, 0, 0, 0, None),
              None]
    hosts = tuple(dataclasses.replace(h, slots=slots[i][0], slots_in_use=slots[i][1], slots_by_model=slots[i][2],
                                      cache=caches[i], unfit_models=("llama3.3:70b",) if i == 1 else ())
                  for i, h in enumerate(base.hosts))
    queue = QueueView(depth={"high": 0, "interactive": 3, "batch": 120},
                      oldest_wait_s={"interactive": 1.25, "batch": 14.0}, admitted=12840,
                      rejected={"queue_full": 3, "timeout": 2}, expired=2, cancelled=1)
    clients = (ClientView("chat-3", "interactive", 8120, 3, 2, 4), ClientView("agent-1", "high", 2710, 0, 1, 0),
               ClientView("10.0.0.7", "batch", 2010, 120, 2, 1))
    snapshot = dataclasses.replace(
        base,
        hosts=hosts,
        queue=queue,
        clients=clients,
        sim_clients="on: 6 chats, 3 agent groups, 2.9 req/s",
        gateway_url="http://127.0.0.1:8000",
        uptime_s=3723.0,
        requests_per_s=41.5,
        errors_per_s=1.25,
        active_requests=3,
        recent_requests=tuple(records),
        components=(ComponentState("gateway", "ready", "http://127.0.0.1:8000"),
                    ComponentState("executor", "ready", "async (in the core loop)"),
                    ComponentState("metrics", "failed", "port 9090 in use")),
        batch=BatchView(queued=120, in_progress=1, done=2, failed=0, docs_per_s=35.5, available=True,
                        jobs=(BatchJobView("job-7f3a", 200, 80, 0, "in_progress", 35.5),)),
    )
    return core, snapshot


@pytest.fixture
def frozen_app(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    core, snapshot = frozen_snapshot()
    app = SollolApp(core, frozen=snapshot, theme_dirs=[bundled_theme_dir()], stop_on_quit=False)
    yield app
    core.stop()
    monkeypatch.delenv("TZ")
    time.tzset()


def test_frozen_snapshot_is_deterministic():
    a = frozen_snapshot()[1]
    b = frozen_snapshot()[1]
    def strip(s: ClusterSnapshot) -> ClusterSnapshot:  # the wall-clock time of each host's last change, not shown
        return dataclasses.replace(s, hosts=tuple(dataclasses.replace(h, last_updated="") for h in s.hosts))

    assert strip(a) == strip(b)
    assert [h.state for h in a.hosts] == ["healthy", "healthy", "draining", "unhealthy"]


def test_main_screen_80x24(snap_compare, frozen_app):
    assert snap_compare(frozen_app, terminal_size=(80, 24))


def test_main_screen_120x40(snap_compare, frozen_app):
    assert snap_compare(frozen_app, terminal_size=(120, 40))


def test_batch_tab_80x24(snap_compare, frozen_app):
    async def show_batch(pilot) -> None:
        pilot.app.dashboard.query_one(TabbedContent).active = "batch-tab"
        await pilot.pause()

    assert snap_compare(frozen_app, terminal_size=(80, 24), run_before=show_batch)


def test_queue_tab_80x24(snap_compare, frozen_app):
    async def show_queue(pilot) -> None:
        await pilot.press("4")
        await pilot.pause()

    assert snap_compare(frozen_app, terminal_size=(80, 24), run_before=show_queue)
