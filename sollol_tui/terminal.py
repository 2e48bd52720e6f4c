"""Keep the screen for the dashboard alone while it runs.

Anything that writes to file descriptors 1 and 2 (tracebacks, Dask worker prints, Ray's C++
layer, child processes) would draw over the dashboard. While the app runs, descriptors 1 and 2 point at the
log file, and ``sys.__stdout__`` / ``sys.__stderr__`` at duplicates of the terminal, which is where Textual
draws (``__stderr__``) and what it measures (``__stdout__``). Everything is put back afterwards, so
messages printed after the app ends reach the terminal again.

While it runs, Textual also swaps ``sys.stdout`` / ``sys.stderr`` for capture objects whose ``fileno()`` is
-1; ``ray.init()`` and Dask's Nanny need a real descriptor there and fail without one. :class:`FdCapture`
answers 1 and 2 instead, which with the redirection above lead to the log file.
"""

from __future__ import annotations

import io
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TextIO

from textual.app import _PrintCapture  # the capture Textual installs as sys.stdout / sys.stderr


class _TerminalFile(io.TextIOWrapper):
    """The terminal, for Textual to draw on. Once the terminal is gone, output is dropped instead of raising:
    an exception would end Textual's output thread, whose bounded queue then blocks the UI for good."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError:
            return len(text)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError:
            pass


def _terminal_copy(fd: int, like: TextIO) -> TextIO:
    raw = open(os.dup(fd), "wb", buffering=0, closefd=True)
    return _TerminalFile(io.BufferedWriter(raw), encoding=getattr(like, "encoding", None) or "utf-8",
                         errors="backslashreplace")


class FdCapture(_PrintCapture):
    """Textual's print capture (prints still reach the log panel) with a real file descriptor."""

    def __init__(self, app: Any, stderr: bool, fd: int) -> None:
        super().__init__(app, stderr=stderr)
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def give_captures_descriptors(app: Any) -> None:
    """Make the app's sys.stdout / sys.stderr captures report descriptors 1 and 2. Call before App.run,
    and only while those descriptors lead to the log file (inside :func:`output_to_log`)."""
    app._capture_stdout = FdCapture(app, stderr=False, fd=1)
    app._capture_stderr = FdCapture(app, stderr=True, fd=2)


@contextmanager
def output_to_log(log_file: str | Path) -> Iterator[bool]:
    """Send descriptors 1 and 2 to `log_file` (appended) and give Textual the terminal by other means.

    Construct the App inside this block: Textual remembers ``sys.__stdout__`` when the App is created.
    Yields True when it redirected; does nothing (and yields False) when stdout is not a terminal.
    """
    path = Path(log_file)
    if not (sys.__stdout__ and sys.__stderr__ and sys.__stdout__.isatty()):
        yield False
        return
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    saved_out, saved_err = os.dup(1), os.dup(2)
    old_dunder_out, old_dunder_err = sys.__stdout__, sys.__stderr__
    term_out = _terminal_copy(saved_out, old_dunder_out)
    term_err = _terminal_copy(saved_err, old_dunder_err)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.__stdout__, sys.__stderr__ = term_out, term_err  # type: ignore[misc]
        yield True
    finally:
        for stream in (sys.stdout, sys.stderr, term_out, term_err):
            try:
                stream.flush()
            except (AttributeError, ValueError, OSError):
                pass
        sys.__stdout__, sys.__stderr__ = old_dunder_out, old_dunder_err  # type: ignore[misc]
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, log_fd):
            os.close(fd)
        for stream in (term_out, term_err):
            try:
                stream.close()
            except OSError:
                pass
