"""Hostile text on the dashboard: what a client or a host supplied (a model name, an error, a host label, a
client name, a log line) reaches the screen without control characters, so it cannot retitle or clear the
operator's terminal or write to its clipboard. A real SOLLOL on simulated nodes, the dashboard under Pilot."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import httpx
import pytest

from sollol_core import SOLLOL, SollolConfig
from sollol_core.observability.text import printable
from sollol_core.sim import SimCluster, SimNodeSpec
from sollol_tui.app import SollolApp
from sollol_tui.themes import bundled_theme_dir

SIZE = (160, 48)
TITLE = "\x1b]0;owned\x07"  # retitles the terminal
CLIPBOARD = "\x1b]52;c;ZWNobyBvd25lZA==\x07"  # writes the clipboard
CLEAR, C1 = "\x1b[2J", "\x9b2J"


def controls(text: str) -> list[str]:
    return [c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0]


def test_printable_strips_c0_and_c1_and_keeps_the_rest():
    assert printable("llama3.2") == "llama3.2"
    assert printable(f"a{TITLE}b{CLEAR}c{C1}d\te\nf") == "a]0;ownedb[2Jc2Jd e f"
    assert printable("naïve 模型 🚀") == "naïve 模型 🚀"


@pytest.fixture
def sim():
    hostile = f"evil{CLEAR}model:latest"
    cluster = SimCluster([SimNodeSpec(name="a", latency_ms=2, tokens=2, tokens_per_s=0, seed=0,
                                      models=["llama3.2", hostile])]).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def sollol(sim, tmp_path):
    config = SollolConfig(hosts=sim.addresses, gateway_port=0, metrics_enabled=False, health_check_enabled=False,
                          adaptive_metrics_interval=60, shutdown_grace=1, log_file=str(tmp_path / "sollol.log"),
                          batch_db=str(tmp_path / "batch.db"))
    core = SOLLOL(config, host_labels={sim.addresses[0]: f"gpu{TITLE}box"}).start()
    yield core
    core.stop()


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


async def test_nothing_a_client_or_host_sent_reaches_the_screen_with_control_characters(sollol, sim):
    app = SollolApp(sollol, theme_dirs=[bundled_theme_dir()], refresh_hz=20)
    address = sim.addresses[0]
    async with app.run_test(size=SIZE) as pilot:
        async with httpx.AsyncClient(base_url=sollol.gateway_url, timeout=10, trust_env=False) as http:
            r = await http.post("/api/chat", json={"model": f"x{CLIPBOARD}y{C1}", "messages": [], "stream": False})
            assert r.status_code == 404  # no host has it: answered, logged, shown
            r = await http.post("/api/generate", json={"model": "llama3.2", "prompt": "hi", "stream": False})
            assert r.status_code == 200
        logging.getLogger("sollol.test").warning("a host said %s", f"{TITLE}{CLEAR}")
        sollol.registry.mark_unhealthy(address, f"refused{CLEAR}{C1}")
        lines = app.dashboard.request_log.lines
        await wait_for(pilot, lambda: lines.shown >= 2)
        await pilot.pause(0.3)
        rows = lines.shown_rows()
        assert any("x]52;c;ZWNobyBvd25lZA==y2J" in " ".join(row) for row in rows), rows  # stripped, still there
        drawn = [" ".join(row) for row in rows]
        width = lines.scrollable_content_region.width
        drawn += ["".join(s.text for s in lines.render_line(y)) for y in range(len(rows) + 1)]
        table = app.dashboard.host_table
        drawn += [text for cells in table._cells.values() for text in cells.values()]
        assert any("gpu]0;ownedbox" in t for t in drawn)  # the label, stripped
        detail = app.dashboard.query_one("#detail-text")
        drawn.append(str(detail.render()))
        drawn.append(app.dashboard.query_one("QueuePanel").text)
        drawn += list(app.dashboard.query_one("LogPanel").texts)
        for text in drawn:
            for line in text.split("\n"):  # the widgets' own line breaks, and nothing else
                assert not controls(line), repr(line)
        assert any("evil[2Jmodel" in t for t in drawn) and any("refused[2J2J" in t for t in drawn)
        assert width > 0
