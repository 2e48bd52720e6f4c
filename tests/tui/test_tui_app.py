"""Dashboard keys, driven with Textual's Pilot against a real SOLLOL on simulated nodes (127.0.0.1 only).

Every test checks the core's state after the key, not only what the screen shows.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

import httpx
import pytest
from textual.widgets import Input, OptionList, Static

from sollol_core import SOLLOL, SollolConfig
from sollol_core.config import STRATEGIES, load_config
from sollol_core.sim import SimCluster, SimNodeSpec
from sollol_tui.app import SollolApp
from sollol_tui.screens.add_host import AddHostScreen
from sollol_tui.screens.confirm import ConfirmScreen
from sollol_tui.screens.help import HelpScreen
from sollol_tui.screens.slots import SlotsScreen
from sollol_tui.screens.theme_picker import ThemePickerScreen
from sollol_tui.screens.weights import WeightsScreen
from sollol_tui.themes import bundled_theme_dir

SIZE = (120, 40)


@pytest.fixture(scope="module")
def sim():
    specs = [SimNodeSpec(name=f"n{i}", latency_ms=2, capacity=16, tokens=4, tokens_per_s=0, seed=i) for i in range(4)]
    cluster = SimCluster(specs).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def sollol(sim, tmp_path):
    """A started SOLLOL on the first three simulated nodes (the fourth is for `a`)."""
    config = SollolConfig(hosts=sim.addresses[:3], gateway_port=0, metrics_enabled=False,
                          health_check_enabled=False, adaptive_metrics_enabled=False, shutdown_grace=1,
                          log_file=str(tmp_path / "sollol.log"), batch_db=str(tmp_path / "batch.db"))
    core = SOLLOL(config).start()
    yield core
    core.stop()


@pytest.fixture
def make_app(sollol, tmp_path) -> Callable[..., SollolApp]:
    def make(**kwargs) -> SollolApp:
        kwargs.setdefault("save_path", tmp_path / "sollol.toml")
        kwargs.setdefault("theme_dirs", [bundled_theme_dir()])
        kwargs.setdefault("refresh_hz", 20)
        return SollolApp(sollol, **kwargs)

    return make


def notes(app: SollolApp) -> list[str]:
    return [n.message for n in app._notifications]


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


def state(sollol: SOLLOL, address: str) -> str:
    return sollol.registry.get(address).state.value


async def test_d_drains_and_undrains_the_selected_host(sollol, make_app):
    app = make_app()
    first = sollol.registry.addresses()[0]
    async with app.run_test(size=SIZE) as pilot:
        table = app.dashboard.host_table
        assert table.selected_address == first
        await pilot.press("d")
        assert state(sollol, first) == "draining"
        assert table.cell(first, "state") == "draining"
        await pilot.press("d")
        assert state(sollol, first) == "healthy"
        assert table.cell(first, "state") == "healthy"
        # the cursor picks the host: the second row
        await pilot.press("down", "d")
        second = sollol.registry.addresses()[1]
        assert state(sollol, second) == "draining"
        assert state(sollol, first) == "healthy"


async def test_plus_and_minus_change_priority(sollol, make_app):
    app = make_app()
    first = sollol.registry.addresses()[0]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("plus", "plus")
        assert sollol.registry.get(first).priority == 2
        await pilot.press("minus")
        assert sollol.registry.get(first).priority == 1
        assert app.dashboard.host_table.cell(first, "priority") == "1"
        await pilot.press("minus", "minus")
        assert sollol.registry.get(first).priority == 0
        assert any("already has priority 0" in n for n in notes(app))


async def test_w_edits_weights_live_and_validates(sollol, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("w")
        assert isinstance(app.screen, WeightsScreen)
        app.screen.query_one("#weight-latency", Input).value = "-1"
        await pilot.press("enter")
        assert isinstance(app.screen, WeightsScreen), "an invalid weight must keep the dialog open"
        assert "latency" in str(app.screen.query_one("#weights-error", Static).render())
        assert sollol.router.weights.latency == pytest.approx(0.2)
        app.screen.query_one("#weight-latency", Input).value = "0.9"
        app.screen.query_one("#weight-cpu_load", Input).value = "0"
        app.screen.query_one("#weight-cache", Input).value = "2.5"  # the cache term's weight is listed too
        await pilot.press("enter")
        assert not isinstance(app.screen, WeightsScreen)
        assert sollol.router.weights.latency == pytest.approx(0.9)
        assert sollol.router.weights.cpu_load == 0.0
        assert sollol.router.weights.cache == pytest.approx(2.5)
        assert sollol.config.routing_weights.latency == pytest.approx(0.9)
        # the score terms shown come from the new weights
        await pilot.pause(0.1)
        assert app.snapshot is not None and app.snapshot.weights["latency"] == pytest.approx(0.9)
        # escape leaves them alone
        await pilot.press("w", "escape")
        assert sollol.router.weights.latency == pytest.approx(0.9)


async def test_n_sets_the_selected_hosts_slots(sollol, make_app, tmp_path):
    app = make_app()
    first, second = sollol.registry.addresses()[:2]
    assert sollol.num_parallel(first) is None  # unlimited by default here
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        assert isinstance(app.screen, SlotsScreen)
        await pilot.press("3", "enter")
        assert not isinstance(app.screen, SlotsScreen)
        assert sollol.num_parallel(first) == 3
        assert sollol.num_parallel(second) is None
        assert f"{first}: slots unlimited → 3" in notes(app)
        # the dialog shows the host's own setting; a bad number keeps it open and changes nothing
        await pilot.press("n")
        box = app.screen.query_one("#slots", Input)
        assert box.value == "3"
        box.value = "0"
        await pilot.press("enter")
        assert isinstance(app.screen, SlotsScreen)
        assert "greater than or equal to 1" in str(app.screen.query_one("#slots-error", Static).render())
        assert sollol.num_parallel(first) == 3
        await pilot.press("escape")
        assert sollol.num_parallel(first) == 3
        # saved with the host's settings
        await pilot.press("ctrl+s")
        assert load_config(str(tmp_path / "sollol.toml"), environ={}, search=False)[0] \
            .host_settings[first].num_parallel == 3
        # empty: back to the default
        await pilot.press("n")
        app.screen.query_one("#slots", Input).value = ""
        await pilot.press("enter")
        assert sollol.num_parallel(first) is None
        assert f"{first}: slots 3 → unlimited (the default)" in notes(app)
        # the cursor picks the host
        await pilot.press("down", "n", "1", "2", "enter")
        assert sollol.num_parallel(second) == 12
        assert sollol.num_parallel(first) is None


async def test_n_follows_default_num_parallel(sollol, make_app):
    sollol.config.default_num_parallel = 2
    app = make_app()
    first = sollol.registry.addresses()[0]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        assert app.screen.query_one("#slots", Input).value == ""  # the host has no setting of its own
        assert "(the default)" in str(app.screen.query_one(".slots-help", Static).render())
        await pilot.press("5", "enter")
        assert sollol.num_parallel(first) == 5
        assert f"{first}: slots 2 → 5" in notes(app)


class TinyClients:
    """Simulated clients as the demo attaches them: start(), stop(), running, describe()."""

    def __init__(self) -> None:
        self.running = False
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")
        self.running = True

    def stop(self) -> None:
        self.calls.append("stop")
        self.running = False

    def describe(self) -> str:
        return "on: 2 chats, 1 agent group, 0.5 req/s" if self.running else "off"


async def test_c_starts_and_stops_the_simulated_clients(sollol, make_app):
    clients = TinyClients()
    sollol.attach_sim_clients(clients)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        header = app.dashboard.query_one("#header")
        await wait_for(pilot, lambda: header._last is not None and "sim clients off" in header._last.plain)
        await pilot.press("c")
        await wait_for(pilot, lambda: clients.calls == ["start"])
        await wait_for(pilot, lambda: "Simulated clients started: 2 chats, 1 agent group, 0.5 req/s." in notes(app))
        assert "sim clients on: 2 chats" in header._last.plain
        await pilot.press("c")
        await wait_for(pilot, lambda: "Simulated clients stopped." in notes(app))
        assert clients.calls == ["start", "stop"] and not clients.running
        assert "sim clients off" in header._last.plain


async def test_c_twice_quickly_starts_then_stops(sollol, make_app):
    clients = TinyClients()
    sollol.attach_sim_clients(clients)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c", "c")
        await wait_for(pilot, lambda: len(clients.calls) == 2)
        assert clients.calls == ["start", "stop"] and not clients.running


class BrokenClients(TinyClients):
    def start(self) -> None:
        raise RuntimeError("the demo clients cannot start")


async def test_c_shows_a_failure_to_start(sollol, make_app):
    sollol.attach_sim_clients(BrokenClients())
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await wait_for(pilot, lambda: "simulated clients: the demo clients cannot start" in notes(app))
        assert app.is_running  # the app goes on


async def test_n_on_a_host_removed_meanwhile_says_so(sollol, make_app):
    app = make_app()
    first = sollol.registry.addresses()[0]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n", "4")
        sollol.remove_host(first)  # gone while the dialog was open
        await pilot.press("enter")
        assert any(n.startswith(f"slots of {first}:") for n in notes(app))
        assert first not in sollol.config.host_settings or sollol.config.host_settings[first].num_parallel is None


async def test_c_without_simulated_clients_says_so(sollol, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await wait_for(pilot, lambda: "no simulated clients (only in --demo)" in notes(app))
        assert "sim clients" not in app.dashboard.query_one("#header")._last.plain


async def test_s_cycles_the_strategy(sollol, make_app):
    app = make_app()
    seen = []
    async with app.run_test(size=SIZE) as pilot:
        for _ in STRATEGIES:
            await pilot.press("s")
            seen.append(sollol.router.strategy_name)
        assert app.snapshot is not None and app.snapshot.strategy == seen[-1]
    start = STRATEGIES.index("performance")
    assert seen == [STRATEGIES[(start + i) % len(STRATEGIES)] for i in range(1, len(STRATEGIES) + 1)]
    assert sollol.config.routing_strategy == "performance"


async def test_b_without_batch_queue_says_so(sollol, make_app, monkeypatch):
    monkeypatch.delattr(SOLLOL, "trigger_batch", raising=False)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        assert "Batch queue not running." in notes(app)


async def test_b_triggers_the_batch(sollol, make_app, monkeypatch):
    calls = []

    def trigger() -> dict:
        calls.append(1)
        return {"triggered": True, "queued": 3}

    monkeypatch.setattr(sollol, "trigger_batch", trigger)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: any(n.startswith("Batch started") for n in notes(app)))
    assert calls == [1]
    assert "Batch started: 3 documents queued." in notes(app)


@pytest.mark.skipif(not hasattr(SOLLOL, "trigger_batch"), reason="the core has no batch queue")
async def test_b_reaches_the_core_batch_queue(sollol, make_app):
    """Against the core's own trigger_batch: it answers, and the answer is shown."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: any(n.startswith("Batch") for n in notes(app)))
    assert any(n.startswith(("Batch started", "Batch not started")) for n in notes(app))


async def test_a_adds_a_host_with_validation(sim, sollol, make_app):
    app = make_app()
    new = sim.addresses[3]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        assert isinstance(app.screen, AddHostScreen)
        await pilot.press(*"not a host", "enter")
        assert isinstance(app.screen, AddHostScreen)
        assert "address" in str(app.screen.query_one("#add-host-error", Static).render())
        app.screen.query_one("#address", Input).value = sollol.registry.addresses()[0]
        await pilot.press("enter")
        assert "already in the cluster" in str(app.screen.query_one("#add-host-error", Static).render())
        app.screen.query_one("#address", Input).value = new
        app.screen.query_one("#priority", Input).value = "2"
        app.screen.query_one("#weight", Input).value = "1.5"
        await pilot.press("enter")
        assert not isinstance(app.screen, AddHostScreen)
        assert new in sollol.registry
        host = sollol.registry.get(new)
        assert (host.priority, host.weight) == (2, 1.5)
        assert app.dashboard.host_table.selected_address == new
        assert new in sollol.config.hosts


async def test_x_removes_a_host_after_confirmation(sollol, make_app):
    app = make_app()
    first, second = sollol.registry.addresses()[:2]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert first in sollol.registry
        await pilot.press("x")
        await pilot.press("enter")  # "No" has the focus: a stray Enter removes nothing
        assert first in sollol.registry
        await pilot.press("x", "y")
        assert first not in sollol.registry
        assert app.dashboard.host_table.row_count == 2
        assert app.dashboard.host_table.selected_address == second


async def test_ctrl_s_saves_a_config_that_loads_back(sollol, make_app, tmp_path):
    app = make_app()
    path = tmp_path / "sollol.toml"
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s", "plus")  # change something first
        await pilot.press("ctrl+s")
        assert path.is_file()
        loaded, used = load_config(str(path), environ={}, search=False)
        assert used == path
        assert loaded == sollol.running_config()
        assert loaded.routing_strategy == "p2c"
        assert loaded.hosts == sollol.registry.addresses()
        await pilot.press("s", "ctrl+s")
        backup = tmp_path / "sollol.toml.bak"
        assert backup.is_file()
        assert load_config(str(backup), environ={}, search=False)[0].routing_strategy == "p2c"
        assert load_config(str(path), environ={}, search=False)[0].routing_strategy == "round_robin"
        assert any("Saved the running configuration" in n for n in notes(app))


async def test_t_picks_a_theme_and_escape_restores(sollol, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "sollol-dark"
        await pilot.press("t")
        assert isinstance(app.screen, ThemePickerScreen)
        names = app.screen.names
        assert names[:3] == ["sollol-dark", "sollol-high-contrast", "sollol-light"]
        await pilot.press("down")
        assert app.theme == "sollol-high-contrast"  # previewed
        await pilot.press("escape")
        assert app.theme == "sollol-dark"
        await pilot.press("t")
        options = app.screen.query_one(OptionList)
        options.highlighted = names.index("sollol-light")
        await pilot.press("enter")
        assert app.theme == "sollol-light"
        assert sollol.config.theme == "sollol-light"
        assert app.current_theme.dark is False


async def test_question_mark_lists_every_key(sollol, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = [str(s.render()) for s in app.screen.query(Static)]
        bindings = app.dashboard_bindings()
        assert len(bindings) == 19
        for b in bindings:
            assert (b.key_display or b.key) in shown
            assert b.description in shown
            assert b.tooltip in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


def test_every_key_has_an_id_and_a_tooltip():
    keys = {b.key for b in SollolApp.BINDINGS}
    assert keys >= {"d", "plus", "minus", "w", "s", "b", "a", "x", "ctrl+s", "t", "question_mark", "q", "slash",
                    "1", "2", "3", "4", "n", "c"}
    for b in SollolApp.BINDINGS:
        assert b.id and b.id.startswith("sollol."), b
        assert b.tooltip, b


async def test_command_palette_offers_every_key(sollol, make_app):
    app = make_app()
    first = sollol.registry.addresses()[0]
    async with app.run_test(size=SIZE) as pilot:
        from sollol_tui.commands import SollolCommands

        provider = SollolCommands(app.screen)
        titles = [title for title, _, _ in provider._commands()]
        assert len(titles) == len(app.dashboard_bindings())
        await pilot.press("ctrl+p")
        await pilot.press(*"drain")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: state(sollol, first) == "draining")


async def send_requests(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10, trust_env=False) as client:
        for _ in range(3):
            r = await client.post("/api/generate", json={"model": "llama3.2", "prompt": "hi", "stream": False})
            assert r.status_code == 200
        for _ in range(2):
            r = await client.post("/api/embed", json={"model": "nomic-embed-text", "input": "hello"})
            assert r.status_code == 200


async def test_requests_arrive_and_slash_filters_them(sollol, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        lines = app.dashboard.request_log.lines
        await send_requests(sollol.gateway_url)
        await wait_for(pilot, lambda: lines.shown == 5)
        endpoints = [row[1] for row in lines.shown_rows()]
        assert sorted(endpoints) == ["/api/embed"] * 2 + ["/api/generate"] * 3
        await pilot.press("slash")
        assert app.focused is app.dashboard.request_log.query_one("#request-filter", Input)
        await pilot.press(*"embed")
        assert lines.shown == 2
        assert all(row[1] == "/api/embed" and row[2] == "nomic-embed-text" for row in lines.shown_rows())
        await pilot.press("enter")  # keeps the filter
        assert lines.shown == 2
        await pilot.press("escape")  # clears it
        assert lines.shown == 5


async def test_digits_switch_the_lower_panel(sollol, make_app):
    from textual.widgets import TabbedContent

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.dashboard.query_one(TabbedContent)
        assert tabs.active == "requests-tab"
        await pilot.press("2")
        assert tabs.active == "batch-tab"
        await pilot.press("3")
        assert tabs.active == "log-tab"
        await pilot.press("4")
        assert tabs.active == "queue-tab"
        await pilot.press("slash")  # the filter brings the request log back
        assert tabs.active == "requests-tab"


async def test_log_records_reach_the_log_panel(sollol, make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        logging.getLogger("sollol.test").warning("a message for the log panel")
        panel = app.dashboard.log_panel
        await wait_for(pilot, lambda: any("a message for the log panel" in t for t in panel.texts))
        handler = app._log_handler
        assert handler in logging.getLogger().handlers
    assert handler not in logging.getLogger().handlers  # removed when the app ends


async def test_q_stops_the_gateway(sollol, make_app):
    app = make_app()
    url = sollol.gateway_url
    port = int(url.rsplit(":", 1)[1])
    async with app.run_test(size=SIZE) as pilot:
        assert sollol.running
        await pilot.press("q")
        await wait_for(pilot, lambda: not sollol.running)
    assert app.return_code == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_broken_theme_file_gives_a_notification_and_the_default(sollol, make_app, tmp_path):
    extra = tmp_path / "themes"
    extra.mkdir()
    (extra / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    sollol.config.theme = "broken"
    app = make_app(theme_dirs=[bundled_theme_dir(), extra])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == "sollol-dark"
        messages = notes(app)
        assert any("broken.toml" in m and "not a colour" in m for m in messages)
        assert any("'broken' is not available; using sollol-dark" in m for m in messages)


async def test_keys_do_nothing_behind_a_dialog(sollol, make_app):
    app = make_app()
    first = sollol.registry.addresses()[0]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("x")  # confirm dialog: its buttons have the focus
        await pilot.press("d", "s")
        assert state(sollol, first) == "healthy"
        assert sollol.router.strategy_name == "performance"
        await pilot.press("q")  # closes the dialog, does not quit
        assert sollol.running
        assert first in sollol.registry


async def test_request_burst_collapses_into_few_messages(sollol, make_app):
    """Hundreds of records from another thread: at most one wake-up message per refresh tick."""
    import threading
    import time

    from sollol_core.observability.snapshot import RequestRecord
    from sollol_tui.feed import FeedPending

    app = make_app(refresh_hz=4)
    posted = []
    async with app.run_test(size=SIZE, message_hook=lambda m: posted.append(m)) as pilot:
        record = RequestRecord(time.time(), "/api/chat", "m", "h:1", 200, 1.0, 1, 0, None)

        def burst() -> None:
            for _ in range(500):
                app._on_request(record)

        thread = threading.Thread(target=burst)
        ticks_before = app.ticks
        thread.start()
        thread.join()
        await wait_for(pilot, lambda: app.dashboard.request_log.lines.shown >= 500)
        wakeups = sum(1 for m in posted if isinstance(m, FeedPending) and m.feed_name == "requests")
        assert 1 <= wakeups <= app.ticks - ticks_before + 1
