"""Pure pieces of the dashboard: number formats, sparklines, header fitting, request-log columns, feeds."""

from __future__ import annotations

import threading

import pytest

from sollol_core.snapshot import ClusterSnapshot, ComponentState
from sollol_tui import fmt
from sollol_tui.app import describe_trigger
from sollol_tui.feed import Feed
from sollol_tui.widgets.header import header_content
from sollol_tui.widgets.request_log import CELLS, column_widths, line_text


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


def test_sparkline_buckets_and_scales_from_zero():
    assert fmt.sparkline([], 4) == "    "
    assert fmt.sparkline([0, 0], 4) == "  ▁▁"
    assert fmt.sparkline([1, 2, 4, 8], 4) == "▂▃▅█"
    line = fmt.sparkline(list(range(100)), 10)  # 100 samples squeezed into 10 cells, max of each bucket
    assert len(line) == 10 and line[-1] == "█" and line[0] == "▂" and list(line) == sorted(line)


@pytest.mark.parametrize("width", [80, 100, 120])
def test_header_first_line_fits(width):
    content = header_content(snapshot(), width=width)
    first = content.plain.split("\n")[0]
    assert len(first) <= width
    for must in ("SOLLOL", "127.0.0.1:38109", "round_robin", "512", "req/s", "12.5", "err/s", "1h02m"):
        assert must in first
    assert ("strategy" in first) == (width >= 120)


def test_header_components_states_then_reasons():
    comps = (ComponentState("gateway", "ready"), ComponentState("dask", "failed", "scheduler unreachable"),
             ComponentState("ray", "starting"))
    second = header_content(snapshot(components=comps)).plain.split("\n")[1]
    assert second.index("gateway ready") < second.index("dask failed") < second.index("ray starting")
    assert second.endswith("· dask: scheduler unreachable")
    assert "ray off" not in second  # present, so shown with its own state
    assert "ray off" in header_content(snapshot()).plain and "dask off" in header_content(snapshot()).plain


@pytest.mark.parametrize("width", [60, 78, 118, 200])
def test_request_log_columns_fill_the_width(width):
    widths = column_widths(width)
    assert sum(widths) + len(CELLS) - 1 == max(width, sum(widths) + len(CELLS) - 1)
    line = line_text(["12:00:00", "/api/chat", "llama3.2", "10.0.0.1:11434", "200", "12ms", "24"], widths)
    assert len(line) == sum(widths) + len(CELLS) - 1


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
