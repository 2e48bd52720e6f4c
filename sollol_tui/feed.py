"""Hand-over of events from background threads to the UI thread, in batches.

The core calls its request subscribers in its own thread, once per finished request: hundreds of times a
second under load. Posting one Textual message per request would flood the UI's queue, so a producer only
appends to a :class:`Feed` and posts a wake-up message when the feed was not already signalled. The UI
drains everything at once and re-arms the feed on its refresh tick, so at most one wake-up message is
posted per tick however large the burst.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable, Generic, TypeVar

from textual.message import Message

T = TypeVar("T")


class Feed(Generic[T]):
    """A bounded, thread-safe buffer with a one-shot "wake the reader" signal."""

    def __init__(self, maxlen: int = 2000) -> None:
        self._items: deque[T] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._signalled = False
        self.received = 0  # items pushed over the feed's life (dropped ones included)

    def push(self, item: T) -> bool:
        """Add an item (any thread). True when the caller should post the wake-up message."""
        with self._lock:
            self._items.append(item)
            self.received += 1
            if self._signalled:
                return False
            self._signalled = True
            return True

    def drain(self) -> list[T]:
        """Everything buffered, oldest first (UI thread). When more arrived than fit, the oldest are gone."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items

    def rearm(self) -> bool:
        """Once per tick (UI thread). True when items are waiting: the caller drains them now and the feed
        stays signalled, so under steady load everything is taken on the tick and no message is posted.
        False when empty: the next push posts a wake-up message again, so a lone event shows at once."""
        with self._lock:
            if self._items:
                return True
            self._signalled = False
            return False


class FeedPending(Message):
    """Something waits in a feed; the handler drains it. Carries nothing, so bursts collapse."""

    def __init__(self, feed_name: str) -> None:
        super().__init__()
        self.feed_name = feed_name


class FeedLogHandler(logging.Handler):
    """A logging handler that hands formatted records to the dashboard's log panel through a Feed.

    Records come from any thread (the core loop, Ray and Dask helpers); ``wake`` posts the message.
    """

    def __init__(self, feed: Feed[tuple[int, str]], wake: Callable[[], None], level: int = logging.INFO) -> None:
        super().__init__(level)
        self.feed = feed
        self._wake = wake
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - a bad record must not break the caller
            self.handleError(record)
            return
        if self.feed.push((record.levelno, line)):
            self._wake()
