"""SollolConfig: every knob, and where its value comes from.

Sources, lowest to highest: defaults < sollol.toml < SOLLOL_* environment variables < command-line flags.
Unknown keys in a file and bad values anywhere raise :class:`ConfigError`, whose message names the key and
the source, so the command line can print it and exit non-zero. Unknown SOLLOL_* variables are only warnings:
the environment is shared (Kubernetes puts SOLLOL_SERVICE_HOST, SOLLOL_PORT=tcp://... into every pod of a
namespace with a Service named `sollol`).

    settings  SollolConfig and its sections; which fields are live
    files     sollol.toml, SOLLOL_* variables, loading, validation messages, saving (0600)
    hosts     host:port normalised, hosts files, loopback, model names
"""

from __future__ import annotations

from .files import (
    DEFAULT_CONFIG_NAME,
    ENV_PREFIX,
    PRIVATE_FILE_MODE,
    config_to_toml_dict,
    env_overrides,
    find_config_file,
    load_config,
    read_toml,
    save_config,
    user_config_dir,
    validation_message,
)
from .hosts import is_loopback_host, model_name, normalize_host, parse_hosts_arg, read_hosts_file
from .settings import (
    FIELD_NAMES,
    LIVE_FIELDS,
    LIVE_MARK,
    SECRET_FIELDS,
    STRATEGIES,
    ApiKey,
    CacheSettings,
    HostSettings,
    ModelSettings,
    QueueSettings,
    RoutingWeights,
    SollolConfig,
    declared_live,
    is_live,
    setting,
)

__all__ = [
    "DEFAULT_CONFIG_NAME", "ENV_PREFIX", "FIELD_NAMES", "LIVE_FIELDS", "LIVE_MARK", "PRIVATE_FILE_MODE",
    "SECRET_FIELDS", "STRATEGIES", "ApiKey", "CacheSettings", "HostSettings", "ModelSettings", "QueueSettings",
    "RoutingWeights", "SollolConfig", "config_to_toml_dict", "declared_live", "env_overrides", "find_config_file",
    "is_live", "is_loopback_host", "load_config", "model_name", "normalize_host", "parse_hosts_arg", "read_hosts_file",
    "read_toml", "save_config", "setting", "user_config_dir", "validation_message",
]
