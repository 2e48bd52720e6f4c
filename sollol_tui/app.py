"""SollolApp: the operator dashboard.

How data reaches the screen (threads never touch widgets):

* a timer in the UI thread polls ``SOLLOL.snapshot()`` at ``config.ui_refresh_hz``;
* finished requests and log records arrive from other threads through a :class:`Feed`: the producer
  appends, and posts one :class:`FeedPending` message only when the feed was idle; the UI drains the
  whole batch. The timer re-arms the feeds, draining what arrived meanwhile, so a burst costs at most one
  message per tick, and under steady load the request log is redrawn once per tick.

Operator actions (actions.py) call the SOLLOL's public methods, then poll once more so the result shows
at once; the keys that trigger them are in keys.py.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Sequence

from textual.app import App
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.timer import Timer

from sollol_core.observability.snapshot import ClusterSnapshot, RequestRecord
from sollol_core.service import SOLLOL

from .actions import OperatorActions, describe_trigger
from .commands import SollolCommands
from .feed import Feed, FeedLogHandler, FeedPending
from .keys import DASHBOARD_ACTIONS, KEYS
from .screens.dashboard import DashboardScreen
from .themes import bundled_theme_dir, choose_theme, load_themes, user_theme_dir

__all__ = ["SollolApp", "describe_trigger"]

log = logging.getLogger("sollol.tui")

REQUESTS, LOGS = "requests", "logs"


class SollolApp(OperatorActions, App[int]):
    """The dashboard over one running SOLLOL.

    frozen: render this snapshot and nothing else (no poll timer, no event feeds): a stable picture
    for screenshots and snapshot tests. The keys still act on `sollol`.
    exit_on_signals: quit gracefully on SIGTERM and SIGHUP (the command line sets it).
    freeze_gc: exempt start-up objects from garbage collection (the command line sets it; see _freeze_gc).
    """

    TITLE = "SOLLOL"
    COMMANDS = App.COMMANDS | {SollolCommands}
    BINDINGS = KEYS

    def __init__(
        self,
        sollol: SOLLOL,
        *,
        frozen: Optional[ClusterSnapshot] = None,
        refresh_hz: Optional[float] = None,
        save_path: Optional[str | Path] = None,
        theme_dirs: Optional[Sequence[Path]] = None,
        exit_on_signals: bool = False,
        stop_on_quit: bool = True,
        capture_logs: bool = True,
        freeze_gc: bool = False,
    ) -> None:
        super().__init__()
        self.sollol = sollol
        self.frozen = frozen
        self.refresh_hz = refresh_hz or sollol.config.ui_refresh_hz
        self.save_path = Path(save_path) if save_path else None
        self.exit_on_signals = exit_on_signals
        self.stop_on_quit = stop_on_quit
        self.capture_logs = capture_logs and frozen is None
        self.freeze_gc = freeze_gc
        self.snapshot: Optional[ClusterSnapshot] = frozen
        self.request_feed: Feed[RequestRecord] = Feed(maxlen=2000)
        self.log_feed: Feed[tuple[int, str]] = Feed(maxlen=1000)
        self.ticks = 0
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._log_handler: Optional[logging.Handler] = None
        self._poll: Optional[Timer] = None
        self._quitting = False
        self._startup_messages: list[str] = []
        self._seen_at_start: set[RequestRecord] = set()
        self._dashboard = DashboardScreen()
        self._load_themes(theme_dirs if theme_dirs is not None else [bundled_theme_dir(), user_theme_dir()])

    # themes ---------------------------------------------------------------------------------------
    def _load_themes(self, folders: Sequence[Path]) -> None:
        loaded = load_themes(folders)
        for theme in loaded.themes.values():
            self.register_theme(theme)
        self._startup_messages += loaded.errors
        name, problem = choose_theme(self.sollol.config.theme, self.available_themes)
        if problem:
            self._startup_messages.append(problem)
        self.theme = name
        self.sollol_theme_names = sorted(loaded.themes)

    def theme_names(self) -> list[str]:
        """SOLLOL's themes first, then Textual's own."""
        rest = sorted(n for n in self.available_themes if n not in self.sollol_theme_names)
        return [*self.sollol_theme_names, *rest]

    # lifecycle ------------------------------------------------------------------------------------
    async def on_mount(self) -> None:
        screen = self._dashboard
        await self.push_screen(screen)
        for message in self._startup_messages:
            self.notify(message, title="Theme", severity="warning", timeout=8)
        if self.frozen is not None:
            screen.show(self.frozen)
            screen.add_requests(self.frozen.recent_requests)
            return
        self._unsubscribe = self.sollol.subscribe_requests(self._on_request)
        snapshot = self.sollol.snapshot()
        self._seen_at_start = set(snapshot.recent_requests[-100:])
        self._show(snapshot)  # first: the request log names hosts as the table does
        screen.add_requests(snapshot.recent_requests)
        if self.sollol.config_warnings:  # logged before the dashboard began to capture the log
            screen.add_log_lines([(logging.WARNING, message) for message in self.sollol.config_warnings])
        if self.capture_logs:
            handler = FeedLogHandler(self.log_feed, partial(self._wake, LOGS))
            logging.getLogger().addHandler(handler)
            self._log_handler = handler
            self.begin_capture_print(screen.log_panel)
        if self.exit_on_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self._on_signal, sig)
            self._guard_sigcont()
        self._poll = self.set_interval(1.0 / self.refresh_hz, self._tick, name="snapshot-poll")
        if self.freeze_gc:
            self.call_after_refresh(self._freeze_gc)

    @staticmethod
    def _freeze_gc() -> None:
        """Move what exists after start-up (widgets, styles, the core's objects) out of the collector's reach.

        A full collection otherwise walks all of them and, holding the GIL, pauses every thread (UI and
        gateway alike) for 100 ms or more under load. Frozen objects are never freed, so this is done
        once, for the objects that live as long as the process.
        """
        gc.collect()
        gc.freeze()

    def on_unmount(self) -> None:
        self._detach()

    def _detach(self) -> None:
        if self._poll is not None:
            self._poll.stop()
            self._poll = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler = None
        if self.exit_on_signals:
            try:
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            except RuntimeError:
                pass

    def _on_signal(self, sig: int) -> None:
        log.info("received %s: quitting", signal.Signals(sig).name)
        if sig == signal.SIGHUP:
            self._silence_terminal()
        self.run_worker(self.action_quit(), name="quit", exclusive=True)

    def _silence_terminal(self) -> None:
        """The terminal hung up: send what is still drawn to /dev/null.

        Textual writes through a thread with a bounded queue; a write to a hung-up terminal fails and ends
        that thread, after which the 31st queued write blocks the UI for good (the process never exits).
        """
        output = getattr(self._driver, "_file", None)
        try:
            fd = output.fileno() if output is not None else -1
        except (OSError, ValueError):
            return
        if fd < 0:
            return
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)

    def _guard_sigcont(self) -> None:
        """Let SIGCONT restart the terminal only after a real suspend (ctrl+z).

        Textual's driver restarts application mode on any SIGCONT; the kernel sends one with SIGHUP when
        the terminal goes away, and a second start then runs against the dead terminal.
        """
        driver = self._driver
        previous = signal.getsignal(signal.SIGCONT)
        if driver is None or not callable(previous):
            return

        def on_sigcont(signum: int, frame: object) -> None:
            if getattr(driver, "_must_signal_resume", True):  # set by the driver's own SIGTSTP handler
                previous(signum, frame)  # type: ignore[misc, operator]

        signal.signal(signal.SIGCONT, on_sigcont)

    # data in --------------------------------------------------------------------------------------
    @property
    def dashboard(self) -> DashboardScreen:
        return self._dashboard

    def _on_request(self, record: RequestRecord) -> None:
        """Core thread: never touches a widget."""
        if self.request_feed.push(record):
            self._wake(REQUESTS)

    def _wake(self, feed_name: str) -> None:
        try:
            self.post_message(FeedPending(feed_name))
        except RuntimeError:  # the app's loop is closing
            pass

    def on_feed_pending(self, message: FeedPending) -> None:
        if message.feed_name == REQUESTS:
            self._flush_requests()
        else:
            self._flush_logs()

    def _flush_requests(self) -> None:
        records = self.request_feed.drain()
        if self._seen_at_start:
            records = [r for r in records if r not in self._seen_at_start]
            self._seen_at_start = set()
        if records:
            self.dashboard.add_requests(records)

    def _flush_logs(self) -> None:
        lines = self.log_feed.drain()
        if lines:
            self.dashboard.add_log_lines(lines)

    def _tick(self) -> None:
        if not self.dashboard.is_attached or not self.dashboard.live:
            return
        self.ticks += 1
        self.refresh_now()
        if self.request_feed.rearm():
            self._flush_requests()
        if self.log_feed.rearm():
            self._flush_logs()

    def refresh_now(self) -> None:
        """Poll the core once and show it (after an action, so its effect shows at once)."""
        if self.frozen is not None:
            return
        self._show(self.sollol.snapshot(recent=1))

    def _show(self, snapshot: ClusterSnapshot) -> None:
        self.snapshot = snapshot
        self.dashboard.show(snapshot)

    # guards ---------------------------------------------------------------------------------------
    def dashboard_bindings(self) -> list[Binding]:
        return [b for b in self.BINDINGS if isinstance(b, Binding) and (b.id or "").startswith("sollol.")]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Dashboard keys act on the dashboard only: not while a dialog is open."""
        if action in DASHBOARD_ACTIONS and isinstance(self.screen, ModalScreen):
            return False
        return True
