"""The `sollol` command as a subprocess, for the command-line tests."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from . import REPO

START_TIMEOUT_S = 45.0


def sollol_command() -> list[str]:
    script = Path(sys.executable).parent / "sollol"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sollol_tui.cli"]


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No SOLLOL_* from the caller, no user config file, no proxies; this checkout's code first on the path
    (whatever copy of the package is installed)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SOLLOL_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    env["HOME"] = str(tmp_path)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env | extra


def run_to_end(args: list[str], tmp_path: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(sollol_command() + args, cwd=tmp_path, env=clean_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


class Running:
    """A `sollol` process whose stderr is read line by line in a thread (its stdout, which nothing reads, goes
    to /dev/null: a pipe nobody reads can fill and block the process)."""

    def __init__(self, args: list[str], tmp_path: Path, **env: str) -> None:
        self.proc = subprocess.Popen(sollol_command() + args, cwd=tmp_path, env=clean_env(tmp_path, **env),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            m = re.search(pattern, line)
            if m:
                return m
        pytest.fail(f"no line matching {pattern!r}; exit code {self.proc.poll()}; stderr:\n{''.join(self.stderr)}")

    def stop(self) -> None:
        """Kill the process if it still runs, and close its stderr pipe once the reader has drained it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


