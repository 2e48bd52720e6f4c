"""How often a client asks for a model, as a rate: what the gateway queue's fair share weighs a client's
demand by (queue.fair_share, over queue.fair_window_s)."""

from __future__ import annotations


class Demand:
    """How often a client sends requests for a model: counts over two consecutive windows, read as a rate
    (requests per second) over the last window. O(1) per request."""

    __slots__ = ("start", "current", "previous", "last", "rank")

    def __init__(self, now: float) -> None:
        self.start = now  # when the current window began
        self.current = 0
        self.previous = 0
        self.last = now  # the latest request
        self.rank = 1  # the class of the latest request: its index in PRIORITY_CLASSES (0 goes first)

    def _roll(self, now: float, window: float) -> None:
        if now - self.start >= window:
            self.previous = self.current if now - self.start < 2 * window else 0
            self.current = 0
            self.start = now if now - self.start >= 2 * window else self.start + window

    def add(self, now: float, window: float) -> None:
        self._roll(now, window)
        self.current += 1
        self.last = now

    def rate(self, now: float, window: float) -> float:
        self._roll(now, window)
        if not self.previous:  # a client just started (or came back): its requests so far, over at least 1 s
            return self.current / max(1.0, min(window, now - self.start))
        into = min(1.0, (now - self.start) / window)
        return (self.current + self.previous * (1.0 - into)) / window
