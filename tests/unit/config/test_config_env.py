"""A shared environment: the variables Kubernetes puts into every pod of a namespace with a Service named
`sollol` are warnings that name them (logged, and shown in the dashboard's log), never an exit; a known
setting with a bad value still exits 2 naming it."""

from __future__ import annotations

import logging
import signal

import httpx
import pytest

from sollol_core import SOLLOL, SollolConfig
from sollol_core.config import env_overrides, load_config
from sollol_core.errors import ConfigError
from sollol_tui.app import SollolApp
from sollol_tui.themes import bundled_theme_dir

from helpers import wait_until
from helpers.cli import START_TIMEOUT_S, run_to_end

pytestmark = pytest.mark.timeout(90)

# What the kubelet injects for `kind: Service, metadata.name: sollol, port 8000` (the addresses are only text
# here: nothing binds or contacts them)
KUBERNETES = {
    "SOLLOL_SERVICE_HOST": "10.96.0.12",
    "SOLLOL_SERVICE_PORT": "8000",
    "SOLLOL_SERVICE_PORT_HTTP": "8000",
    "SOLLOL_PORT": "tcp://10.96.0.12:8000",
    "SOLLOL_PORT_8000_TCP": "tcp://10.96.0.12:8000",
    "SOLLOL_PORT_8000_TCP_PROTO": "tcp",
    "SOLLOL_PORT_8000_TCP_PORT": "8000",
    "SOLLOL_PORT_8000_TCP_ADDR": "10.96.0.12",
}


def test_kubernetes_variables_are_warnings_that_name_them():
    warnings: list[str] = []
    config, _ = load_config(environ=KUBERNETES | {"SOLLOL_CHAT_TIMEOUT": "20"}, search=False, warnings=warnings)
    assert config.gateway_host == "127.0.0.1" and config.gateway_port == 8000 and config.chat_timeout == 20.0
    assert config.model_dump() == SollolConfig(chat_timeout=20.0).model_dump()  # nothing else taken from them
    assert len(warnings) == 1
    for name in KUBERNETES:
        assert name in warnings[0]
    assert "SOLLOL_CHAT_TIMEOUT" not in warnings[0]


def test_a_service_link_is_never_a_value():
    # a Service named sollol-gateway or sollol-metrics gives SOLLOL_GATEWAY_PORT / SOLLOL_METRICS_PORT=tcp://...
    warnings: list[str] = []
    out = env_overrides({"SOLLOL_GATEWAY_PORT": "tcp://10.96.0.13:8000", "SOLLOL_METRICS_PORT": "udp://h:9090",
                         "SOLLOL_DASK_SCHEDULER": "tcp://10.96.0.14:8786"}, warnings)
    assert out == {"dask_scheduler": "tcp://10.96.0.14:8786"}  # a text setting keeps a tcp:// value
    assert warnings == ["environment: ignored SOLLOL_GATEWAY_PORT, SOLLOL_METRICS_PORT: a service link "
                        "(tcp://host:port), not a value for that setting"]


def test_table_keys_from_the_environment():
    warnings: list[str] = []
    out = env_overrides({"SOLLOL_ROUTING_WEIGHTS__LATENCY": "0.5", "SOLLOL_ROUTING_WEIGHTS__NOPE": "1",
                         "SOLLOL_CACHE__ENABLED__X": "1", "SOLLOL_QUEUE__MAX_DEPTH": "10"}, warnings)
    assert out == {"routing_weights": {"latency": 0.5}, "queue": {"max_depth": 10}}
    assert "SOLLOL_ROUTING_WEIGHTS__NOPE" in warnings[0] and "SOLLOL_CACHE__ENABLED__X" in warnings[0]


def test_a_known_key_with_a_bad_value_is_still_an_error():
    with pytest.raises(ConfigError, match="gateway_port"):
        load_config(environ=KUBERNETES | {"SOLLOL_GATEWAY_PORT": "eighty"}, search=False)
    with pytest.raises(ConfigError, match="routing_weights.latency"):
        load_config(environ={"SOLLOL_ROUTING_WEIGHTS__LATENCY": "-1"}, search=False)


def test_without_a_list_the_warning_is_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="sollol.config"):
        load_config(environ={"SOLLOL_SERVICE_HOST": "10.96.0.12"}, search=False)
    assert any("SOLLOL_SERVICE_HOST" in r.getMessage() for r in caplog.records)


def test_sollol_starts_in_a_kubernetes_environment_with_a_warning(sim_cluster, sollol_process):
    cluster = sim_cluster(n=1)
    proc = sollol_process(["--no-ui", "--hosts", cluster.addresses[0], "--port", "0", "--metrics-port", "0"],
                          **KUBERNETES)
    url = proc.wait_for(r"gateway on (http://127\.0\.0\.1:\d+)", START_TIMEOUT_S).group(1)
    stderr = "".join(proc.stderr)
    assert "WARNING" in stderr and "SOLLOL_SERVICE_HOST" in stderr and "SOLLOL_PORT_8000_TCP_ADDR" in stderr
    with httpx.Client(base_url=url, timeout=20, trust_env=False) as http:
        assert http.get("/api/health").json()["hosts_available"] == 1
        r = http.post("/api/generate", json={"model": "llama3.2", "prompt": "hi", "stream": False})
        assert r.status_code == 200 and r.json()["done"] is True
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(30) == 0


def test_a_bad_value_among_kubernetes_variables_exits_2(tmp_path):
    r = run_to_end(["--no-ui", "--hosts", "127.0.0.1:1"], tmp_path, **KUBERNETES, SOLLOL_SHUTDOWN_GRACE="soon")
    assert r.returncode == 2, r.stderr
    assert "shutdown_grace" in r.stderr and "configuration error" in r.stderr


def test_the_service_keeps_and_logs_the_warnings(caplog):
    with caplog.at_level(logging.WARNING, logger="sollol"):
        sollol = SOLLOL(SollolConfig(), config_warnings=["environment: ignored SOLLOL_SERVICE_HOST"])
    assert sollol.config_warnings == ["environment: ignored SOLLOL_SERVICE_HOST"]
    assert [r.getMessage() for r in caplog.records if r.name == "sollol"] == \
        ["environment: ignored SOLLOL_SERVICE_HOST"]


async def test_the_dashboard_shows_the_warnings_in_its_log_at_start(sim_cluster, tmp_path):
    cluster = sim_cluster(n=1)
    config = SollolConfig(hosts=cluster.addresses, gateway_port=0, metrics_enabled=False,
                          health_check_enabled=False, adaptive_metrics_enabled=False, shutdown_grace=1,
                          log_file=str(tmp_path / "sollol.log"), batch_db=str(tmp_path / "batch.db"))
    message = "environment: ignored 1 SOLLOL_* variable(s) that name no setting: SOLLOL_SERVICE_HOST"
    sollol = SOLLOL(config, config_warnings=[message]).start()
    try:
        app = SollolApp(sollol, theme_dirs=[bundled_theme_dir()], refresh_hz=20)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert message in app.dashboard.log_panel.texts
    finally:
        sollol.stop()
    wait_until(lambda: not sollol.running, what="the gateway to stop")
