"""Secrets stay secret: a saved config is 0600 (its .bak too), a token or key that came from the environment or
the command line is never written, and configuration errors name a key by its name, never the key."""

from __future__ import annotations

import os
import stat
import tomllib

import pytest

from sollol_core import SOLLOL
from sollol_core.config import SollolConfig, load_config, save_config
from sollol_core.errors import ConfigError

KEY, TOKEN = "sk-secret-0d7f3a", "tok-secret-c4e19b"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_saved_files_and_their_backup_are_private(tmp_path):
    f = tmp_path / "sollol.toml"
    f.write_text(f'admin_token = "{TOKEN}"\n')
    os.chmod(f, 0o644)  # as an editor may have left it
    backup = save_config(SollolConfig(admin_token=TOKEN, api_keys={KEY: {"name": "a"}}), f)
    assert backup is not None and mode(backup) == 0o600 and mode(f) == 0o600
    assert TOKEN in backup.read_text()  # the old file, kept, now readable by its owner only
    backup.chmod(0o644)
    save_config(SollolConfig(), f)
    assert mode(backup) == 0o600 and mode(f) == 0o600


def test_a_token_and_keys_from_the_environment_are_never_written(tmp_path):
    f = tmp_path / "sollol.toml"
    f.write_text('gateway_port = 8100\n[api_keys."sk-in-file-1"]\nname = "filed"\n')
    env = {"SOLLOL_ADMIN_TOKEN": TOKEN, "SOLLOL_API_KEYS": f'{{"{KEY}": {{"name": "from-env"}}}}'}
    config, _ = load_config(str(f), environ=env)
    assert config.admin_token == TOKEN and set(config.api_keys) == {"sk-in-file-1", KEY}
    save_config(config, f)
    text = f.read_text()
    assert TOKEN not in text and KEY not in text
    saved = tomllib.loads(text)
    assert "admin_token" not in saved and set(saved["api_keys"]) == {"sk-in-file-1"}
    assert saved["gateway_port"] == 8100


def test_a_token_from_the_command_line_leaves_the_files_own_in_place(tmp_path):
    f = tmp_path / "sollol.toml"
    f.write_text('admin_token = "the-files-own"\n')
    config, _ = load_config(str(f), environ={}, overrides={"admin_token": TOKEN})
    assert config.admin_token == TOKEN
    save_config(config, f)
    assert tomllib.loads(f.read_text())["admin_token"] == "the-files-own"


def test_the_running_service_saves_without_the_environments_secrets(tmp_path):
    """What ctrl+s does (SOLLOL.save_config of the running config)."""
    f = tmp_path / "sollol.toml"
    config, _ = load_config(environ={"SOLLOL_ADMIN_TOKEN": TOKEN}, search=False)
    sollol = SOLLOL(config, config_path=f)
    path, _ = sollol.save_config()
    assert path == f and TOKEN not in f.read_text() and mode(f) == 0o600
    sollol.update_config(admin_token="set-while-running")  # not from the environment: saved
    sollol.save_config()
    assert tomllib.loads(f.read_text())["admin_token"] == "set-while-running"


def test_errors_name_a_key_by_its_name_never_the_key(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(f'[api_keys."{KEY}"]\nname = "team-a"\npriority = "urgent"\n'
                 f'[api_keys."sk-second-9f9f"]\npriority = "high"\n')
    with pytest.raises(ConfigError) as e:
        load_config(str(f), environ={})
    message = str(e.value)
    assert "api_keys.<team-a>.priority" in message and "api_keys.<#2>.name" in message
    assert KEY not in message and "sk-second-9f9f" not in message
    with pytest.raises(ConfigError) as e:
        load_config(environ={"SOLLOL_API_KEYS": f'{{"{KEY}": "not a table"}}'}, search=False)
    assert KEY not in str(e.value) and "api_keys" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(environ={}, overrides={"admin_token": ""}, search=False)
    assert "admin_token" in str(e.value)
    sollol = SOLLOL(SollolConfig())
    with pytest.raises(ValueError) as e:
        sollol.update_config(api_keys={KEY: {"name": "x", "priority": "urgent"}})
    assert KEY not in str(e.value) and "api_keys.<x>.priority" in str(e.value)
    with pytest.raises(ValueError) as e:
        sollol.update_config(admin_token=["not", TOKEN])
    assert TOKEN not in str(e.value)


def test_the_secrets_are_not_in_the_configs_repr():
    config = SollolConfig(admin_token=TOKEN, api_keys={KEY: {"name": "a"}})
    assert TOKEN not in repr(config) and KEY not in repr(config) and TOKEN not in str(config)
