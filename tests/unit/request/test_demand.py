"""Demand: a client's requests for a model read as a rate over the fair window."""

from __future__ import annotations

import pytest

from sollol_core.request.demand import Demand

WINDOW = 10.0


def test_a_new_client_is_read_over_at_least_a_second():
    d = Demand(0.0)
    for i in range(5):
        d.add(i * 0.1, WINDOW)
    assert d.rate(0.5, WINDOW) == pytest.approx(5.0)  # 5 requests in half a second: over 1 s, not 0.5 s
    assert d.rate(4.0, WINDOW) == pytest.approx(5 / 4)


def test_the_last_window_fades_as_the_next_one_fills():
    d = Demand(0.0)
    for i in range(10):
        d.add(float(i), WINDOW)  # one a second through the first window
    assert d.rate(10.0, WINDOW) == pytest.approx(1.0)
    assert d.rate(15.0, WINDOW) == pytest.approx(0.5)  # silent since: half of the last window still counts
    d.add(16.0, WINDOW)
    assert d.rate(16.0, WINDOW) == pytest.approx((1 + 10 * 0.4) / WINDOW)
    assert d.last == 16.0


def test_a_client_silent_for_two_windows_asks_for_nothing():
    d = Demand(0.0)
    for i in range(10):
        d.add(float(i), WINDOW)
    assert d.rate(35.0, WINDOW) == 0.0
