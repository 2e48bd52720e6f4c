"""Pure pieces of the dashboard: number formats, sparklines, header fitting, request-log columns, feeds."""

from __future__ import annotations

import threading

import pytest

from sollol_core.observability.snapshot import ClusterSnapshot, ComponentState, QueueView
from sollol_tui import fmt
from sollol_tui.app import describe_trigger
from sollol_tui.feed import Feed
from sollol_tui.widgets.header import header_content
from sollol_tui.widgets.request_log import CELLS, layout, line_text


def snapshot(**kw) -> ClusterSnapshot:
    base = dict(gateway_url="http://127.0.0.1:38109", strategy="round_robin", weights={}, uptime_s=3723,
                requests_per_s=512.4, errors_per_s=12.5, active_requests=17, hosts=(), recent_requests=(),
                demo=True)
    return ClusterSnapshot(**(base | kw))


def test_number_formats():
    assert [fmt.ms(v) for v in (None, 0, 4.24, 123.4, 1240, 12_400)] == \
        ["—", "—", "4.2ms", "123ms", "1.24s", "12.4s"]
    assert [fmt.percent(v) for v in (None, 0.5, 0.9999)] == ["—", "50%", "100%"]
    assert [fmt.mib(v) for v in (None, 512, 7680)] == ["—", "512M", "7.5G"]
    assert [fmt.uptime(v) for v in (65, 3723, 2 * 86400 + 3600)] == ["1m05s", "1h02m", "2d01h"]
    assert [fmt.seconds(v) for v in (None, 0.05, 12.34, 250)] == ["—", "0.05 s", "12.3 s", "4m10s"]
    assert [fmt.count(v) for v in (999, 8123, 12_345, 2_500_000)] == ["999", "8.1k", "12k", "2.5M"]
    assert [fmt.size(v) for v in (960, 42_480, 5 * 1024 ** 2)] == ["960 B", "41.5 KiB", "5.0 MiB"]
    assert [fmt.slots(3, 4), fmt.slots(2, None)] == ["3/4", "2/∞"]


def test_host_names_use_labels():
    assert fmt.host_name("127.0.0.1:11501", "simulated fast") == "fast (sim)"
    assert fmt.host_name("10.0.0.2:11434", "") == "10.0.0.2:11434"
    assert fmt.host_name("10.0.0.2:11434", "gpu box") == "gpu box"
    names = fmt.host_names([("127.0.0.1:1", "simulated fast"), ("127.0.0.1:2", "simulated fast"),
                            ("127.0.0.1:3", "simulated slow"), ("10.0.0.2:11434", "")])
    assert names == {"127.0.0.1:1": "fast (sim) :1", "127.0.0.1:2": "fast (sim) :2", "127.0.0.1:3": "slow (sim)",
                     "10.0.0.2:11434": "10.0.0.2:11434"}  # alike names get their port


def test_sparkline_buckets_and_scales_from_zero():
    assert fmt.sparkline([], 4) == "    "
    assert fmt.sparkline([0, 0], 4) == "  ▁▁"
    assert fmt.sparkline([1, 2, 4, 8], 4) == "▂▃▅█"
    line = fmt.sparkline(list(range(100)), 10)  # 100 samples squeezed into 10 cells, max of each bucket
    assert len(line) == 10 and line[-1] == "█" and line[0] == "▂" and list(line) == sorted(line)


@pytest.mark.parametrize("width", [80, 100, 120, 130])
def test_header_first_line_fits(width):
    queue = QueueView(depth={"high": 0, "interactive": 3, "batch": 120})
    content = header_content(snapshot(queue=queue), width=width)
    first = content.plain.split("\n")[0]
    assert len(first) <= width
    for must in ("SOLLOL", "127.0.0.1:38109", "round_robin", "512", "req/s", "12.5", "err/s", "h0 i3 b120"):
        assert must in first
    assert ("strategy" in first) == (width >= 130)
    assert ("up 1h02m" in first) == (width >= 100)  # the uptime goes before any figure of the queue
    assert ("queue h0" in first) == (width >= 100)  # then "queue" shortens to "q"
    assert ("q" in first.split()) == (width < 100)
    assert ("err/s q" in first) == (width == 80)  # the last resort: single spaces between the groups


def test_header_queue_depths_stand_out_when_waiting():
    content = header_content(snapshot(queue=QueueView(depth={"interactive": 3, "unknown-class": 2})))
    first = content.plain.split("\n")[0]
    assert "queue h0 i3 b0 unknown-class 2" in first  # classes the dashboard does not know still show
    def style_of(text: str) -> str:
        start = first.index(text)
        return " ".join(str(s.style) for s in content.spans if s.start <= start < s.end)

    assert "$warning" in style_of("3 b0")  # a waiting interactive request: warning colour
    assert "$warning" not in style_of("0 i3") and "$text-muted" in style_of("0 i3")  # none waiting: muted


def test_header_sim_clients_on_the_second_line():
    on = "on: 6 chats, 3 agent groups, 2.9 req/s"
    assert "sim" not in header_content(snapshot()).plain  # no simulated clients: nothing said
    wide = header_content(snapshot(sim_clients=on), width=200).plain.split("\n")[1]
    assert wide == " sim clients on: 6 chats, 3 agent groups, 2.9 req/s  ray off  dask off"
    assert header_content(snapshot(sim_clients="off"), width=200).plain.split("\n")[1].startswith(
        " sim clients off  ")
    comps = (ComponentState("gateway", "ready"), ComponentState("executor", "ready"),
             ComponentState("metrics", "failed", "port 9090 in use"))
    narrow = header_content(snapshot(sim_clients=on, components=comps), width=80).plain.split("\n")[1]
    assert narrow.startswith(" sim on  ") and "dask off" in narrow  # the description goes, every component stays
    assert narrow.endswith("  · metrics: port 9090 in use")  # the reasons last, cut on the screen if need be
    assert len(narrow.split("  · ")[0]) <= 80
    middle = header_content(snapshot(sim_clients=on, components=comps), width=110).plain.split("\n")[1]
    assert middle.startswith(" sim clients on  gateway ready")


def test_header_components_states_then_reasons():
    comps = (ComponentState("gateway", "ready"), ComponentState("dask", "failed", "scheduler unreachable"),
             ComponentState("ray", "starting"))
    second = header_content(snapshot(components=comps)).plain.split("\n")[1]
    assert second.index("gateway ready") < second.index("dask failed") < second.index("ray starting")
    assert second.endswith("· dask: scheduler unreachable")
    assert "ray off" not in second  # present, so shown with its own state
    assert "ray off" in header_content(snapshot()).plain and "dask off" in header_content(snapshot()).plain


@pytest.mark.parametrize("width", [60, 78, 80, 100, 118, 120, 149, 150, 200])
def test_request_log_columns_fill_the_width(width):
    slots = layout(width)
    used = sum(s.width for s in slots) + len(slots) - 1
    minimum = sum(c.width or c.min_width for c in (s.cell for s in slots)) + len(slots) - 1
    assert used == max(width, minimum)
    texts = ["12:00:00", "/api/chat", "llama3.2", "10.0.0.1:11434", "200", "—", "12ms", "24", "inter", "agent-1",
             "cached 93% (8.1k of 8.7k chars), est. 0.05 s"]
    assert len(texts) == len(CELLS)
    assert len(line_text(texts, slots)) == used
    # placement is last and takes what the others leave; the optional cells come in as the line widens
    keys = [s.cell.key for s in slots]
    assert keys[-1] == "placement" and {"time", "endpoint", "model", "host", "status", "wait", "latency"} <= set(keys)
    assert ("tokens" in keys) == (width >= 100)
    assert ("priority" in keys) == (width >= 130)
    assert ("client" in keys) == (width >= 150)


@pytest.mark.parametrize("width", [80, 120, 160])
def test_request_log_columns_stay_in_line_with_wide_characters(width):
    from rich.cells import cell_len

    slots = layout(width)
    used = sum(s.width for s in slots) + len(slots) - 1
    plain = ["12:00:00", "/api/chat", "llama3.2", "10.0.0.1:11434", "200", "—", "12ms", "24", "inter", "agent-1",
             "model not found"]
    wide = [*plain[:2], "通义千问:7b", *plain[3:9], "客户端", "模型未找到，请先拉取模型 " * 4]
    lines = [line_text(texts, slots) for texts in (plain, wide)]
    assert [cell_len(line) for line in lines] == [used, used]  # by terminal cells, not characters
    # the status column starts at the same cell in both lines
    starts = [cell_len(line[: line.index(" 200 ") + 1]) for line in lines]
    assert starts[0] == starts[1]


def test_request_log_gives_spare_width_to_placement():
    narrow, wide = ({s.cell.key: s.width for s in layout(w)} for w in (80, 200))
    assert narrow["placement"] >= 14
    assert wide["placement"] >= 45  # the whole "cached 93% (8.1k of 8.7k chars), est. 0.05 s"
    assert wide["endpoint"] <= 20 and wide["model"] <= 24 and wide["host"] <= 22  # bounded: the rest is placement


def test_describe_trigger():
    assert describe_trigger({"triggered": True, "queued": 1}) == ("Batch started: 1 document queued.", "information")
    assert describe_trigger({"triggered": False, "queued": 0, "reason": "SOLLOL is not running"}) == \
        ("Batch not started: SOLLOL is not running.", "warning")
    assert describe_trigger(None) == ("Batch started.", "information")


def test_feed_signals_once_until_rearmed():
    feed: Feed[int] = Feed(maxlen=100)
    signals = []

    def produce() -> None:
        for i in range(1000):
            if feed.push(i):
                signals.append(i)

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(signals) == 1
    assert feed.received == 4000
    assert len(feed.drain()) == 100  # bounded: the newest are kept
    assert feed.rearm() is False  # empty: the next push signals again
    assert feed.push(1) is True
    assert feed.rearm() is True  # items waiting: the tick takes them, no new signal
    assert feed.push(2) is False
