"""The slots, cache, placement and queue parts of the dashboard, from frozen snapshots with those fields filled.

The host views come from a real SOLLOL (labels, score terms computed by the core) that is never started;
the fields the core fills from its queue and cache shadow are set on copies, as a running core would.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest
from textual.widgets import Static

from sollol_core import SOLLOL, SollolConfig
from sollol_core.observability.snapshot import (
    CacheView,
    ClientView,
    ClusterSnapshot,
    HostView,
    QueueView,
    RequestRecord,
    RunnerView,
    SlotLearningView,
)
from sollol_tui.app import SollolApp
from sollol_tui.fmt import fit
from sollol_tui.screens.slots import parse_slots
from sollol_tui.themes import bundled_theme_dir
from sollol_tui.widgets.header import ClusterHeader
from sollol_tui.widgets.host_detail import compact_content, extra_content, full_content
from sollol_tui.widgets.host_table import LINE_WIDTH, HostTable, host_cells, slots_full
from sollol_tui.widgets.queue_panel import queue_content
from sollol_tui.widgets.request_log import make_row

FAST, SLOW, REAL = "127.0.0.1:11601", "127.0.0.1:11602", "127.0.0.1:11603"
CACHE = CacheView(hit_rate=0.93, prefill_saved_s=81.4, entries=8, blocks=5310, bytes=42_480, prefill_s_per_kchar=0.27,
                  predicted_hits=412, confirmed_hits=398, corrections=3)
PLACED = "cached 93% (8.1k of 8.7k chars), est. 0.05 s"


@pytest.fixture
def core() -> Iterator[SOLLOL]:
    config = SollolConfig(hosts=[FAST, SLOW, REAL], gateway_port=0, metrics_enabled=False,
                          health_check_enabled=False, adaptive_metrics_enabled=False)
    sollol = SOLLOL(config, host_labels={FAST: "simulated fast", SLOW: "simulated slow"}, demo=True)
    sollol.registry.update_models(FAST, ["llama3.2"], ["llama3.2"])
    yield sollol
    sollol.stop()


def filled(core: SOLLOL) -> ClusterSnapshot:
    """The core's snapshot with the queue's, the cache's and the demo clients' fields filled."""
    base = core.snapshot()
    views = {h.host: h for h in base.hosts}
    fast = dataclasses.replace(views[FAST], slots=4, slots_in_use=3, cache=CACHE,
                               slots_by_model=(("llama3.2:latest", 2, 4), ("qwen2.5:0.5b", 1, 4)),
                               score_terms={**views[FAST].score_terms, "cache": 0.05})
    slow = dataclasses.replace(views[SLOW], slots=2, slots_in_use=2, slots_by_model=(("llama3.2", 2, 2),),
                               unfit_models=("llama3.3:70b",), cache=CacheView(None, 0.0, 0, 0, 0, None))
    real = dataclasses.replace(views[REAL], slots=None, slots_in_use=5, cache=None)  # cache-aware routing off
    records = (
        RequestRecord(1_767_258_000.0, "/api/chat", "llama3.2", FAST, 200, 40.0, 24, 0, None, placement=PLACED,
                      wait_ms=0.0, priority="interactive", client="agent-1"),
        RequestRecord(1_767_258_001.0, "/api/embed", "nomic-embed-text", SLOW, 200, 600.0, None, 0, None,
                      placement="cold; balanced", wait_ms=1250.0, priority="batch", client="10.0.0.7"),
        RequestRecord(1_767_258_002.0, "/api/chat", "llama3.2", REAL, 500, 48.0, None, 0, "simulated failure",
                      placement="cold; balanced", wait_ms=12.5, priority="high", client="chat-3"),
    )
    queue = QueueView(depth={"high": 0, "interactive": 3, "batch": 120}, oldest_wait_s={"interactive": 1.25,
                      "batch": 14.0}, admitted=12840, rejected={"queue_full": 3, "timeout": 2}, expired=2, cancelled=1)
    clients = (ClientView("agent-1", "high", 2710, 0, 1, 0), ClientView("chat-3", "interactive", 8120, 3, 2, 4),
               ClientView("10.0.0.7", "batch", 2010, 120, 2, 1))
    return dataclasses.replace(base, hosts=(fast, slow, real), recent_requests=records, queue=queue, clients=clients,
                               sim_clients="on: 6 chats, 3 agent groups, 2.9 req/s")


def view(snapshot: ClusterSnapshot, address: str) -> HostView:
    return next(h for h in snapshot.hosts if h.host == address)


# pure parts -----------------------------------------------------------------------------------------------
def test_host_cells_show_label_slots_and_cache(core):
    snap = filled(core)
    fast, slow, real = (host_cells(view(snap, a)) for a in (FAST, SLOW, REAL))
    assert (fast["address"], slow["address"], real["address"]) == ("fast (sim)", "slow (sim)", REAL)
    assert (fast["slots"], slow["slots"], real["slots"]) == ("3/4", "2/2", "5/∞")
    assert (fast["cache"], slow["cache"], real["cache"]) == ("93%", "—", "—")  # no placements yet / not tracked
    assert not slots_full("3/4") and slots_full("2/2") and not slots_full("5/∞")


def test_request_row_has_placement_wait_class_and_client(core):
    snap = filled(core)
    names = {FAST: "fast (sim)", SLOW: "slow (sim)"}
    placed, queued, failed = (make_row(r, names) for r in snap.recent_requests)
    assert placed.texts[3] == "fast (sim)" and placed.texts[5] == "—" and placed.texts[-1] == PLACED
    assert queued.texts[5] == "1.25s" and queued.texts[8:10] == ("batch", "10.0.0.7")
    assert failed.texts[3] == REAL and failed.texts[5] == "12ms" and failed.error
    assert failed.texts[-1] == "simulated failure; cold; balanced"  # the error first: the row is red for it
    assert placed.texts[8] == "inter"  # short for the narrow Class cell; the filter knows the whole word
    for words in ("interactive", "agent-1", FAST, "fast (sim)", "cached 93%"):
        assert words in placed.haystack
    assert "batch" in queued.haystack and "high" in failed.haystack and "chat-3" in failed.haystack


def test_host_detail_full_shows_cache_slots_and_the_cache_term(core):
    snap = filled(core)
    fast = view(snap, FAST)
    terms = full_content(fast, snap.hosts, snap.weights, snap.strategy).plain
    assert "cache miss" in terms and "0.0500" in terms  # the cache term with its weight (1.00) × 0.05 s
    assert "simulated fast" in terms and FAST in terms  # the full address stays in the detail
    extra = extra_content(fast).plain.split("\n")
    assert extra == ["slots   3/4 in use: llama3.2 2/4, qwen2.5:0.5b 1/4",
                     "cache   hit 93%, saved 81.4 s, 0.27 s/1k chars",
                     "shadow  8 slots, 5.3k blocks, 41.5 KiB",
                     "hits    412 predicted, 398 confirmed, 3 corrected"]
    slow = extra_content(view(snap, SLOW)).plain.split("\n")
    assert slow[:3] == ["slots   2/2 in use: llama3.2 2/2", "unfit   llama3.3:70b (tried elsewhere)",
                        "cache   hit —, saved 0.00 s, — s/1k chars"]
    assert extra_content(view(snap, REAL)).plain.split("\n") == ["slots   5/∞ in use", "cache   not tracked for this host"]


def test_learned_slots_show_with_a_tilde_and_their_evidence_and_runners_with_their_reloads(core):
    snap = filled(core)
    learning = SlotLearningView(model="llama3.2:latest", slots=2, applies=True, waited=3, ran_beside=41,
                                most_beside=2, probes=4, probes_failed=2,
                                last="1 → 2: ran beside 1 other(s) without waiting")
    runner = RunnerView(model="llama3.2:latest", options="num_ctx=4096", confirmed=True, warm_load_s=0.05,
                        load_s=0.9, reloads=3, causes={"options": 2, "cold": 1})
    learned = dataclasses.replace(view(snap, SLOW), slots_learned=True, slot_learning=(learning,), runners=(runner,),
                                  slots_by_model=(("llama3.2:latest", 2, 2),))
    cell = host_cells(learned)["slots"]
    assert cell == "2/2~" and slots_full(cell)
    lines = extra_content(learned).plain.split("\n")
    assert lines[0] == "slots   2/2 in use: llama3.2 2/2~"
    assert lines[2] == ("learned llama3.2 2: 1 → 2: ran beside 1 other(s) without waiting; waited 3, beside 41, "
                        "probes 4 (2 waited)")
    assert lines[3] == "runner  llama3.2 num_ctx=4096, warm 0.05 s, load 0.90 s, reloads 3 (cold 1, options 2)"
    assert "reloads 3" in compact_content(learned, snap.hosts).plain


def test_host_detail_compact_adds_one_summary_line(core):
    snap = filled(core)
    lines = compact_content(view(snap, FAST), snap.hosts).plain.split("\n")
    assert "cache .05" in lines[1]
    assert lines[2] == "slots llama3.2 2/4, qwen2.5:0.5b 1/4  cache saved 81.4 s  hits 398/412"
    assert compact_content(view(snap, SLOW), snap.hosts).plain.split("\n")[2] == \
        "slots llama3.2 2/2  unfit llama3.3:70b"
    assert len(compact_content(view(snap, REAL), snap.hosts).plain.split("\n")) == 2  # nothing more to say


def test_queue_content(core):
    snap = filled(core)
    lines = queue_content(snap.queue, snap.clients).plain.split("\n")
    assert [line.split() for line in lines[1:4]] == [["high", "0", "—"], ["interactive", "3", "1.25", "s"],
                                                      ["batch", "120", "14.0", "s"]]
    assert lines[4] == "admitted 12840  rejected 5 (queue full 3, timeout 2)  expired 2  cancelled 1"
    assert lines[6].split() == ["client", "class", "requests", "waiting", "in", "flight", "rejected"]
    assert [line.split() for line in lines[7:]] == [  # busiest client first
        ["chat-3", "interactive", "8120", "3", "2", "4"], ["agent-1", "high", "2710", "0", "1", "0"],
        ["10.0.0.7", "batch", "2010", "120", "2", "1"]]
    empty = queue_content(QueueView(), ()).plain
    assert "admitted 0  rejected 0  expired 0  cancelled 0" in empty and "no client has sent a request yet" in empty


def test_parse_slots():
    assert parse_slots("") == ((None,), [])  # the default
    assert parse_slots(" 3 ")[0] == (3,)
    for bad in ("0", "2000", "two", "1.5"):
        choice, problems = parse_slots(bad)
        assert choice is None and problems, bad


# on the screen --------------------------------------------------------------------------------------------
def app_for(core: SOLLOL) -> SollolApp:
    return SollolApp(core, frozen=filled(core), theme_dirs=[bundled_theme_dir()], stop_on_quit=False)


async def test_frozen_screen_shows_the_new_fields(core):
    app = app_for(core)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.dashboard.host_table
        assert table.cell(FAST, "address") == "fast (sim)"
        assert table.cell(FAST, "slots") == "3/4"
        assert table.cell(FAST, "cache") == "93%"
        assert table.cell(REAL, "slots") == "5/∞"
        header = app.dashboard.query_one(ClusterHeader)._last
        assert header is not None
        first, second = header.plain.split("\n")
        assert "queue h0 i3 b120" in first
        assert second.startswith(" sim clients on: 6 chats, 3 agent groups, 2.9 req/s")
        rows = app.dashboard.request_log.lines.shown_rows()
        assert [r[3] for r in rows] == [REAL, "slow (sim)", "fast (sim)"]  # newest first, named as in the table
        assert rows[2][-1] == PLACED and rows[1][5] == "1.25s"
        # the full detail of the selected host has the cache figures
        extra = str(app.dashboard.query_one("#detail-extra", Static).render())
        assert "hit 93%" in extra and "412 predicted" in extra


def drawn(table: HostTable) -> list[str]:
    return ["".join(segment.text for segment in table.render_line(y)) for y in range(table.row_count + 1)]


def test_fit_cuts_with_an_ellipsis_and_pads_by_terminal_cells():
    assert fit("llama3.2, qwen2.5", 15) == "llama3.2, qwen…"
    assert fit("abc", 5) == "abc  "
    assert fit("模型模型", 5) == "模型…"  # two cells each: the ellipsis takes the fifth
    assert fit("anything", 0) == ""
    assert fit("12", 5, right=True) == "   12"
    assert fit("模型模型", 4) == "模 …"  # a wide character cut in half leaves a space, never half a glyph


async def test_host_table_draws_each_host_and_repaints_only_the_row_that_changed(core):
    app = app_for(core)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.dashboard.host_table
        lines = drawn(table)
        assert lines[0].startswith(" Host                State     Score  Slots  Cache Latency")
        assert lines[1].startswith(" fast (sim)          healthy") and " 3/4 " in lines[1] and " 93% " in lines[1]
        assert " 5/∞ " in lines[3] and all(len(line) == table.scrollable_content_region.width for line in lines)
        repainted: list[int] = []
        original = table.refresh

        def refresh(*regions, **kwargs):
            repainted.extend(r.y for r in regions)
            return original(*regions, **kwargs)

        table.refresh = refresh
        snap = filled(core)
        slow = dataclasses.replace(view(snap, SLOW), slots_in_use=1)
        table.show(tuple(slow if h.host == SLOW else h for h in snap.hosts))
        assert repainted == [2]  # the slow host's line only (line 0 is the header)
        assert " 1/2 " in drawn(table)[2] and drawn(table)[1] == lines[1]


async def test_host_table_cursor_follows_keys_and_clicks_and_the_detail_follows_it(core):
    app = app_for(core)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.dashboard.host_table
        assert table.selected_address == FAST
        await pilot.press("down")
        assert table.selected_address == SLOW
        await pilot.pause()
        assert "simulated slow" in str(app.dashboard.query_one("#detail-text", Static).render())
        await pilot.press("end")
        assert table.selected_address == REAL
        await pilot.press("down")  # past the last row: stays
        assert table.selected_address == REAL
        await pilot.press("home")
        assert table.selected_address == FAST
        await pilot.click(HostTable, offset=(5, 2))  # line 2: the second host
        assert table.selected_address == SLOW
        await pilot.click(HostTable, offset=(5, 0))  # the header selects nothing
        assert table.selected_address == SLOW


async def test_host_table_scrolls_to_keep_the_cursor_row_in_sight():
    addresses = [f"127.0.0.1:{11700 + i}" for i in range(20)]  # more hosts than the table's 14 lines show
    config = SollolConfig(hosts=addresses, gateway_port=0, metrics_enabled=False, health_check_enabled=False,
                          adaptive_metrics_enabled=False)
    sollol = SOLLOL(config)
    try:
        app = SollolApp(sollol, frozen=sollol.snapshot(), theme_dirs=[bundled_theme_dir()], stop_on_quit=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            table = app.dashboard.host_table
            assert table.size.height == 14 and table.scroll_y == 0  # the roomy screen's most: header and 13 rows
            await pilot.press("end")
            assert table.selected_address == addresses[-1] and table.scroll_y == 20 - 13
            shown = drawn(table)[1:14]
            assert shown[-1].startswith(" " + addresses[-1]) and shown[0].startswith(" " + addresses[7] + " ")
            await pilot.press("pageup")
            assert table.cursor_row == 19 - 13 and table.scroll_y == 6
            await pilot.press("home")
            assert table.scroll_y == 0 and drawn(table)[1].startswith(" " + addresses[0])
    finally:
        sollol.stop()


async def test_host_table_scrolls_sideways_in_a_narrow_terminal(core):
    app = app_for(core)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.dashboard.host_table
        assert table.virtual_size.width == LINE_WIDTH > table.scrollable_content_region.width
        assert drawn(table)[0].rstrip().endswith("OK %")  # the first 80 columns: up to OK %
        table.scroll_to(x=LINE_WIDTH, animate=False, immediate=True)
        await pilot.pause()
        assert drawn(table)[0].rstrip().endswith("Prio Wt")


async def test_slash_finds_class_and_client(core):
    app = app_for(core)
    async with app.run_test(size=(80, 24)) as pilot:
        lines = app.dashboard.request_log.lines
        await pilot.press("slash", *"agent-1")
        assert [r[3] for r in lines.shown_rows()] == ["fast (sim)"]
        app.dashboard.request_log.query_one("#request-filter").value = "batch"
        await pilot.pause()
        assert [r[1] for r in lines.shown_rows()] == ["/api/embed"]
        app.dashboard.request_log.query_one("#request-filter").value = SLOW  # the address, though the name shows
        await pilot.pause()
        assert [r[3] for r in lines.shown_rows()] == ["slow (sim)"]


async def test_4_shows_the_queue_tab(core):
    app = app_for(core)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        assert app.dashboard.query_one("#tabs").active == "queue-tab"
        text = app.dashboard.queue_panel.text
        assert "interactive        3   1.25 s" in text and "chat-3" in text and "queue full 3" in text
        shown = str(app.dashboard.queue_panel.query_one("#queue-text", Static).render())
        assert "chat-3" in shown
