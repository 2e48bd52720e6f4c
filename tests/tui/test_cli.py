"""The `sollol` command, run as a subprocess: headless start, a request through it, SIGTERM, config errors."""

from __future__ import annotations

import signal
import socket

import httpx
import pytest

from helpers import CHAT_MODEL, USER
from helpers.cli import START_TIMEOUT_S, run_to_end

pytestmark = pytest.mark.timeout(90)

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
