"""Config: sources and their order, validation messages, hosts files, saving."""

import re
import tomllib

import pytest

from sollol_core.config import (
    ApiKey,
    HostSettings,
    ModelSettings,
    SollolConfig,
    env_overrides,
    is_live,
    load_config,
    normalize_host,
    parse_hosts_arg,
    read_hosts_file,
    save_config,
)
from sollol_core.errors import ConfigError

from helpers import REPO

ROOT = REPO
EXAMPLE = ROOT / "sollol.toml.example"


def test_example_file_loads_and_documents_every_key():
    config, path = load_config(str(EXAMPLE), environ={})
    assert path == EXAMPLE
    assert config == SollolConfig()  # the example shows the defaults
    text = EXAMPLE.read_text()
    for key in SollolConfig.model_fields:
        assert re.search(rf"^#? ?{key} = ", text, re.M) or re.search(rf"^#? ?\[{key}[].]", text, re.M), \
            f"{key} not documented"
    for table in ("routing_weights", "cache", "queue"):
        for key in SollolConfig.model_fields[table].annotation.model_fields:
            assert re.search(rf"^{key} = ", text, re.M), f"{table}.{key} not documented"
    for model in (ApiKey, HostSettings, ModelSettings):  # keyed tables, shown commented out
        for key in model.model_fields:
            assert re.search(rf"^# {key} = ", text, re.M), f"{model.__name__}.{key} not documented"


def test_example_file_names_the_settings_read_only_at_start():
    text = EXAMPLE.read_text()
    head = text.split("take effect on the next start:\n", 1)[1].split("\n\n", 1)[0]
    named = {name.strip() for line in head.splitlines() for name in line.lstrip("#").split(",") if name.strip()}
    assert named == {name for name in SollolConfig.model_fields if not is_live(name)}


def test_precedence_defaults_file_env_cli(tmp_path):
    f = tmp_path / "sollol.toml"
    f.write_text('gateway_port = 8100\nmetrics_port = 9100\nchat_timeout = 10.0\n'
                 '[routing_weights]\nlatency = 0.9\n')
    env = {"SOLLOL_METRICS_PORT": "9200", "SOLLOL_ROUTING_WEIGHTS__CPU_LOAD": "0.05", "PATH": "/bin"}
    config, _ = load_config(str(f), environ=env, overrides={"chat_timeout": 20.0, "gateway_host": None})
    assert config.gateway_port == 8100  # file
    assert config.metrics_port == 9200  # env beats file
    assert config.chat_timeout == 20.0  # cli beats file
    assert config.gateway_host == "127.0.0.1"  # None override leaves the default
    assert config.routing_weights.latency == 0.9 and config.routing_weights.cpu_load == 0.05
    assert config.routing_weights.priority == 0.1  # untouched default inside the table


def test_file_search_order(tmp_path, monkeypatch):
    user = tmp_path / "xdg" / "sollol"
    user.mkdir(parents=True)
    (user / "sollol.toml").write_text("gateway_port = 8300\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config, path = load_config(environ={})
    assert config.gateway_port == 8300 and path == user / "sollol.toml"
    (work / "sollol.toml").write_text("gateway_port = 8200\n")
    config, path = load_config(environ={})
    assert config.gateway_port == 8200 and path == work / "sollol.toml"


def test_unknown_key_names_key_and_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("gatway_port = 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(f), environ={})
    assert "gatway_port" in str(e.value) and str(f) in str(e.value)


def test_bad_value_names_key(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('routing_strategy = "fastest"\n[routing_weights]\nlatency = -1\n')
    with pytest.raises(ConfigError) as e:
        load_config(str(f), environ={})
    msg = str(e.value)
    assert "routing_strategy" in msg and "routing_weights.latency" in msg and str(f) in msg


def test_unknown_env_key_is_a_warning_and_bad_env_value_an_error():
    warnings: list[str] = []
    config, _ = load_config(environ={"SOLLOL_GATEWAY_PROT": "1", "SOLLOL_CHAT_TIMEOUT": "7"}, search=False,
                            warnings=warnings)
    assert config.chat_timeout == 7.0 and config.gateway_port == 8000
    assert len(warnings) == 1 and "SOLLOL_GATEWAY_PROT" in warnings[0] and "SOLLOL_CHAT_TIMEOUT" not in warnings[0]
    with pytest.raises(ConfigError, match="gateway_port"):
        load_config(environ={"SOLLOL_GATEWAY_PORT": "eighty"}, search=False, warnings=warnings)


def test_invalid_toml_and_missing_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text("hosts = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(f), environ={})
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(tmp_path / "absent.toml"), environ={})


def test_env_hosts_list_and_json_values():
    out = env_overrides({"SOLLOL_HOSTS": "a:1,b", "SOLLOL_AUTOBATCH_ENABLED": "false", "HOME": "/"})
    assert out == {"hosts": ["a:1", "b"], "autobatch_enabled": False}
    config, _ = load_config(environ={"SOLLOL_HOSTS": "a:1,b"}, search=False)
    assert config.hosts == ["a:1", "b:11434"]


@pytest.mark.parametrize("raw,expected", [("10.0.0.2", "10.0.0.2:11434"), ("http://h:1/", "h:1"),
                                          ("box:8080", "box:8080")])
def test_normalize_host(raw, expected):
    assert normalize_host(raw) == expected


@pytest.mark.parametrize("raw", ["", "a b:1", "h:0", "h:99999", "h:port", "http://h:1/path"])
def test_normalize_host_rejects(raw):
    with pytest.raises(ValueError):
        normalize_host(raw)


def test_hosts_file(tmp_path):
    f = tmp_path / "hosts.txt"
    f.write_text("# cluster\n127.0.0.1:11434\n\n10.0.0.2  # gpu box\n")
    assert read_hosts_file(f) == ["127.0.0.1:11434", "10.0.0.2:11434"]
    assert parse_hosts_arg(str(f)) == ([], str(f))
    assert parse_hosts_arg("a:1,b:2") == (["a:1", "b:2"], None)
    config, _ = load_config(environ={}, overrides={"hosts": ["a:1"], "hosts_file": str(f)}, search=False)
    assert config.all_hosts() == ["a:1", "127.0.0.1:11434", "10.0.0.2:11434"]
    f.write_text("good:1\nbad host\n")
    with pytest.raises(ConfigError, match="line 2"):
        load_config(environ={}, overrides={"hosts_file": str(f)}, search=False)


def test_batch_size_bounds():
    with pytest.raises(ConfigError, match="autobatch_min_batch_size"):
        load_config(environ={}, overrides={"autobatch_min_batch_size": 50, "autobatch_max_batch_size": 10},
                    search=False)


def test_host_settings(tmp_path):
    f = tmp_path / "sollol.toml"
    f.write_text('hosts = ["10.0.0.2"]\n[host_settings."10.0.0.2"]\npriority = 2\nweight = 3.5\n')
    config, _ = load_config(str(f), environ={})
    assert config.host_settings["10.0.0.2:11434"].priority == 2
    assert config.host_settings["10.0.0.2:11434"].weight == 3.5
    f.write_text('[host_settings."10.0.0.2"]\nweight = 0\n')
    with pytest.raises(ConfigError, match=r"host_settings\.10\.0\.0\.2\.weight"):
        load_config(str(f), environ={})


def test_save_round_trip_keeps_backup(tmp_path):
    f = tmp_path / "sollol.toml"
    f.write_text("gateway_port = 8100\n")
    config = SollolConfig(hosts=["a:1", "b:2"], routing_strategy="p2c", gateway_port=8500)
    config.routing_weights.latency = 0.7
    backup = save_config(config, f)
    assert backup is not None and backup.read_text() == "gateway_port = 8100\n"
    loaded, _ = load_config(str(f), environ={})
    assert loaded == config
    assert "admin_token" not in tomllib.loads(f.read_text())  # None values are left out


def test_text_settings_from_the_environment_stay_text():
    config, _ = load_config(environ={"SOLLOL_ADMIN_TOKEN": "123456", "SOLLOL_BATCH_DB": "2024",
                                     "SOLLOL_GATEWAY_PORT": "8001"}, search=False)
    assert config.admin_token == "123456" and config.batch_db == "2024" and config.gateway_port == 8001


def test_missing_hosts_file_is_an_error_not_a_host():
    with pytest.raises(ConfigError, match="no such file"):
        parse_hosts_arg("config/hosts.txt")


def test_ipv6_hosts_need_brackets():
    assert normalize_host("[::1]") == "[::1]:11434" and normalize_host("[fe80::1]:8080") == "[fe80::1]:8080"
    with pytest.raises(ValueError, match="brackets"):
        normalize_host("fe80::1")
