"""Recent requests and request rates, for the dashboard, /api/stats and the log."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from .snapshot import RequestRecord

WINDOW_S = 10  # requests/s and errors/s are averaged over this many whole seconds


class RateMeter:
    """Counts per whole second over a short window; O(1) to add, O(window) to read."""

    def __init__(self, window_s: int = WINDOW_S) -> None:
        self.window = window_s
        self._buckets: deque[list[int]] = deque()  # [second, count]

    def add(self, now: float) -> None:
        sec = int(now)
        if self._buckets and self._buckets[-1][0] == sec:
            self._buckets[-1][1] += 1
        else:
            self._buckets.append([sec, 1])
            while self._buckets and self._buckets[0][0] <= sec - self.window - 1:
                self._buckets.popleft()

    def rate(self, now: float) -> float:
        """Average over the last `window` complete seconds."""
        sec = int(now)
        total = sum(c for s, c in self._buckets if sec - self.window <= s < sec)
        return total / self.window


class RequestLog:
    """Keeps the newest records and tells subscribers (the dashboard) about each one.

    Subscribers are called in the core loop's thread: they must not block (the dashboard's subscriber
    only posts a Textual message).
    """

    def __init__(self, maxlen: int = 500) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._requests = RateMeter()
        self._errors = RateMeter()
        self._subscribers: list[Callable[[RequestRecord], None]] = []
        self.total = 0
        self.errors = 0

    def subscribe(self, callback: Callable[[RequestRecord], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            self._requests.add(record.time)
            self.total += 1
            if record.status >= 500 or record.error:
                self._errors.add(record.time)
                self.errors += 1
        for cb in list(self._subscribers):
            try:
                cb(record)
            except Exception:
                pass

    def recent(self, n: int = 200) -> tuple[RequestRecord, ...]:
        if n <= 0:
            return ()
        with self._lock:
            items = list(self._records)
        return tuple(items[-n:])

    def rates(self) -> tuple[float, float]:
        now = time.time()
        with self._lock:
            return self._requests.rate(now), self._errors.rate(now)
