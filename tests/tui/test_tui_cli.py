"""`sollol --demo` on a real pseudo-terminal: it draws, quits cleanly on q and on SIGTERM (exit 0, terminal
back in cooked mode, alternate screen left), also when the terminal hangs up under load, and log lines go to
the log file, never onto the screen."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.request
from pathlib import Path

import pytest


class PtyRun:
    """A child process whose stdin/stdout/stderr are one pseudo-terminal of a given size."""

    def __init__(self, args: list[str], cwd: Path, cols: int = 80, rows: int = 24) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOLLOL_")}
        env.update(TERM="xterm-256color", XDG_CONFIG_HOME=str(cwd), COLUMNS=str(cols), LINES=str(rows))
        self.proc = subprocess.Popen(args, stdin=self.slave, stdout=self.slave, stderr=self.slave, cwd=cwd,
                                     env=env, start_new_session=True)
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def wait_for(self, text: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not seen; output tail: {bytes(self.output[-2000:])!r}")
            time.sleep(0.05)

    def hang_up(self) -> None:
        """The terminal goes away: the pty master is closed, yet its descriptor number stays ours (now
        /dev/null), so neither the reader thread nor close() can touch a file a later open() got."""
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, self.master)
        os.close(devnull)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        # the slave first: with every slave end closed the reader's read() ends (EIO); only then the master,
        # so the reader never reads from a descriptor number that a later open() has reused
        os.close(self.slave)
        self._reader.join(5)
        os.close(self.master)


@pytest.mark.parametrize("how", ["q", "SIGTERM"])
def test_demo_quits_cleanly(tmp_path, how):
    log_file = tmp_path / "sollol.log"
    run = PtyRun([sys.executable, "-m", "sollol_tui.cli", "--demo", "--port", "0", "--metrics-port", "0",
                  "--log-file", str(log_file)], cwd=tmp_path)
    try:
        run.wait_for(b"Slots", timeout=40)  # the host table is drawn
        time.sleep(0.5)
        if how == "q":
            os.write(run.master, b"q")
        else:
            run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(20) == 0
        attrs = termios.tcgetattr(run.slave)
        time.sleep(0.2)  # let the reader take the last bytes
    finally:
        run.close()
    out = bytes(run.output)
    assert out.rfind(b"\x1b[?1049l") > out.find(b"\x1b[?1049h") >= 0, "the alternate screen was not left"
    lflag = attrs[3]
    assert lflag & termios.ICANON and lflag & termios.ECHO, "the terminal was left in raw mode"
    log = log_file.read_text()
    assert "gateway listening on" in log and "stopping: no new requests" in log
    assert b"gateway listening on" not in out and b" INFO " not in out


def keep_busy(url: str, seconds: float) -> None:
    """Requests to the gateway from a few threads, so the dashboard redraws all the time."""
    body = json.dumps({"model": "llama3.2", "prompt": "hi", "stream": False}).encode()
    deadline = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(f"{url}/api/generate", data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as answer:
                    answer.read()
            except OSError:
                time.sleep(0.05)

    for _ in range(6):
        threading.Thread(target=loop, daemon=True).start()


def test_demo_exits_when_the_terminal_hangs_up_under_load(tmp_path):
    """The terminal goes away (SIGHUP, then the SIGCONT the kernel sends with it) while frames are being
    drawn: the gateway stops and the process exits instead of blocking on writes to a dead terminal."""
    log_file = tmp_path / "sollol.log"
    run = PtyRun([sys.executable, "-m", "sollol_tui.cli", "--demo", "--port", "0", "--metrics-port", "0",
                  "--log-file", str(log_file)], cwd=tmp_path, cols=120, rows=40)
    try:
        run.wait_for(b"Slots", timeout=40)  # the host table is drawn
        match = re.search(rb"http://127\.0\.0\.1:(\d+)", bytes(run.output))
        assert match, "gateway URL not on the screen"
        keep_busy(f"http://127.0.0.1:{match.group(1).decode()}", seconds=6)
        time.sleep(2)
        run.hang_up()  # writes to the terminal fail from now on
        time.sleep(1)  # frames keep coming meanwhile, as when the signal is late
        run.proc.send_signal(signal.SIGHUP)
        run.proc.send_signal(signal.SIGCONT)
        assert run.proc.wait(25) == 0
    finally:
        run.close()
    log = log_file.read_text()
    assert "received SIGHUP" in log and "gateway stopped" in log
