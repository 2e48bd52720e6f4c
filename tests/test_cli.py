"""The `sollol` command, run as a subprocess: headless start, a request through it, SIGTERM, config errors."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import CHAT_MODEL, USER

pytestmark = pytest.mark.timeout(90)

START_TIMEOUT_S = 45.0


def sollol_command() -> list[str]:
    script = Path(sys.executable).parent / "sollol"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sollol_tui.cli"]


REPO = Path(__file__).resolve().parents[1]


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
    """A `sollol` process whose stderr is read line by line in a thread."""

    def __init__(self, args: list[str], tmp_path: Path, **env: str) -> None:
        self.proc = subprocess.Popen(sollol_command() + args, cwd=tmp_path, env=clean_env(tmp_path, **env),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)


@pytest.fixture
def sollol_process(tmp_path):
    running: list[Running] = []

    def start(args: list[str], **env: str) -> Running:
        r = Running(args, tmp_path, **env)
        running.append(r)
        return r

    yield start
    for r in running:
        r.stop()


def test_headless_serves_and_exits_0_on_sigterm(sim_cluster, sollol_process):
    cluster = sim_cluster(n=2)
    proc = sollol_process(["--no-ui", "--hosts", ",".join(cluster.addresses), "--port", "0",
                           "--metrics-port", "0"])
    url = proc.wait_for(r"gateway on (http://127\.0\.0\.1:\d+)", START_TIMEOUT_S).group(1)
    with httpx.Client(base_url=url, timeout=20, trust_env=False) as http:
        r = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False})
        assert r.status_code == 200 and r.json()["message"]["content"].endswith("tok7")
        assert sorted(http.get("/api/health").json()["hosts"]) == sorted(cluster.addresses)
    assert sum(len(node.received) for node in cluster.nodes) == 1
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(30) == 0
    proc._reader.join(5)
    assert "Traceback" not in "".join(proc.stderr)
    with pytest.raises(httpx.ConnectError):  # it stopped listening
        httpx.get(f"{url}/api/version", timeout=2, trust_env=False)


def test_hosts_file_is_accepted(sim_cluster, sollol_process, tmp_path):
    cluster = sim_cluster(n=2)
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(f"# my nodes\n{cluster.addresses[0]}\n\nhttp://{cluster.addresses[1]}/  # second\n")
    proc = sollol_process(["--no-ui", "--hosts", str(hosts), "--port", "0", "--metrics-port", "0"])
    url = proc.wait_for(r"gateway on (http://127\.0\.0\.1:\d+) \((\d+) hosts", START_TIMEOUT_S).group(1)
    with httpx.Client(base_url=url, timeout=20, trust_env=False) as http:
        assert sorted(http.get("/api/health").json()["hosts"]) == sorted(cluster.addresses)
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(30) == 0


def test_unknown_key_in_config_file_exits_2_naming_key_and_file(tmp_path):
    config = tmp_path / "my-sollol.toml"
    config.write_text('hosts = ["127.0.0.1:1"]\ngateway_prot = 8001\n')
    r = run_to_end(["--no-ui", "--config", str(config)], tmp_path)
    assert r.returncode == 2, r.stderr
    assert "gateway_prot" in r.stderr and str(config) in r.stderr and "unknown key" in r.stderr


def test_bad_value_in_config_file_exits_2_naming_key_and_file(tmp_path):
    (tmp_path / "sollol.toml").write_text('hosts = ["127.0.0.1:1"]\nmax_retries = -4\n')  # found in the cwd
    r = run_to_end(["--no-ui"], tmp_path)
    assert r.returncode == 2, r.stderr
    assert "max_retries" in r.stderr and "sollol.toml" in r.stderr


def test_config_file_that_is_not_toml_exits_2(tmp_path):
    config = tmp_path / "broken.toml"
    config.write_text("hosts = [\n")
    r = run_to_end(["--no-ui", "--config", str(config)], tmp_path)
    assert r.returncode == 2 and str(config) in r.stderr and "TOML" in r.stderr


def test_bad_environment_value_exits_2_naming_the_key(tmp_path):
    r = run_to_end(["--no-ui", "--hosts", "127.0.0.1:1"], tmp_path, SOLLOL_MAX_RETRIES="many")
    assert r.returncode == 2, r.stderr
    assert "max_retries" in r.stderr and "environment" in r.stderr


def test_bad_hosts_argument_exits_2(tmp_path):
    r = run_to_end(["--no-ui", "--hosts", "127.0.0.1:99999"], tmp_path)
    assert r.returncode == 2 and "--hosts" in r.stderr and "99999" in r.stderr


def test_port_in_use_exits_non_zero_with_a_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = run_to_end(["--no-ui", "--hosts", "127.0.0.1:1", "--port", str(port), "--metrics-port", "0"], tmp_path)
    assert r.returncode == 1
    assert f"127.0.0.1:{port}" in r.stderr and "--port" in r.stderr
