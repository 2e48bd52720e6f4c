"""The programmatic API without a running gateway: running config, saving, update_config."""

import pytest

from sollol_core import SOLLOL, SollolConfig
from sollol_core.config import load_config


def test_saved_config_keeps_priorities_and_weights_and_drops_simulated_hosts(tmp_path):
    sollol = SOLLOL(SollolConfig(hosts=["10.0.0.2:11434", "127.0.0.1:41000"], routing_strategy="p2c"),
                    host_labels={"127.0.0.1:41000": "simulated fast"})
    sollol.set_priority("10.0.0.2:11434", 3)
    sollol.set_weight("10.0.0.2:11434", 2.5)
    sollol.add_host("10.0.0.3", priority=1)
    sollol.set_weights(latency=0.7)
    path, backup = sollol.save_config(tmp_path / "sollol.toml")
    assert backup is None
    loaded, _ = load_config(str(path), environ={})
    assert loaded.hosts == ["10.0.0.2:11434", "10.0.0.3:11434"]  # no simulated port in the file
    assert loaded.host_settings["10.0.0.2:11434"].model_dump() == {"priority": 3, "weight": 2.5, "num_parallel": None}
    assert loaded.host_settings["10.0.0.3:11434"].priority == 1
    assert loaded.routing_strategy == "p2c" and loaded.routing_weights.latency == 0.7
    again = SOLLOL(loaded)  # and a new instance starts where the old one was
    assert (again.registry.get("10.0.0.2:11434").priority, again.registry.get("10.0.0.2:11434").weight) == (3, 2.5)
    path, backup = sollol.save_config(path)
    assert backup is not None and backup.exists()


def test_update_config_applies_live_and_says_what_needs_a_restart():
    sollol = SOLLOL(SollolConfig(hosts=["a:1", "b:1"]))
    result = sollol.update_config(routing_strategy="round_robin", chat_timeout=12.0, gateway_port=9001,
                                  hosts=["b:1", "c:1"])
    assert sorted(result["applied"]) == ["chat_timeout", "hosts", "routing_strategy"]
    assert result["restart_required"] == ["gateway_port"]
    assert sollol.router.strategy_name == "round_robin" and sollol.config.chat_timeout == 12.0
    assert sollol.registry.addresses() == ["b:1", "c:1"]
    with pytest.raises(ValueError):
        sollol.update_config(max_retries=-1, chat_timeout=1.0)
    assert sollol.config.chat_timeout == 12.0  # all or nothing


def test_status_before_start():
    sollol = SOLLOL(SollolConfig(hosts=["a:1"]))
    status = sollol.get_status()
    assert status["running"] is False and status["hosts"] == 1 and status["strategy"] == "performance"
    assert sollol.get_health()["status"] == "ok"
    assert sollol.recent_requests(0) == ()
