"""Where a config comes from and goes: sollol.toml found and read, SOLLOL_* variables, the layers merged and
validated (a message naming the key and the source, never a secret's value), and saved with the file
private (0600)."""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping, Optional

import tomli_w
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from .settings import FIELD_NAMES, SollolConfig

log = logging.getLogger("sollol.config")

ENV_PREFIX = "SOLLOL_"
DEFAULT_CONFIG_NAME = "sollol.toml"


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sollol"


def find_config_file(explicit: str | None = None) -> Optional[Path]:
    """--config PATH, else ./sollol.toml, else the user config folder's sollol.toml."""
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"--config {explicit}: no such file")
        return p
    for candidate in (Path.cwd() / DEFAULT_CONFIG_NAME, user_config_dir() / DEFAULT_CONFIG_NAME):
        if candidate.is_file():
            return candidate
    return None


def _format_validation(err: ValidationError, source: str, data: Optional[Mapping[str, Any]] = None) -> str:
    lines = []
    for e in err.errors():
        loc = _safe_loc(e["loc"], data)
        key = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
        elif _is_secret_loc(e["loc"]):  # the value may be the secret itself (or hold the keys)
            lines.append(f"{source}: key '{key}': {e['msg']}")
        else:
            lines.append(f"{source}: key '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _is_secret_loc(loc: tuple[Any, ...]) -> bool:
    """A location whose input may be a secret: the token, the key table, one key's entry as a whole."""
    return bool(loc) and (loc[0] == "admin_token" or (loc[0] == "api_keys" and len(loc) < 3))


def _safe_loc(loc: tuple[Any, ...], data: Optional[Mapping[str, Any]]) -> list[str]:
    """The location with an API key replaced by the key's name (`api_keys.<team-a>`), or by its place in the
    table when it has no usable name (`api_keys.<#2>`): a message must never show a key."""
    parts = [str(p) for p in loc]
    if len(parts) >= 2 and parts[0] == "api_keys":
        keys = data.get("api_keys") if isinstance(data, Mapping) else None
        entry = keys.get(loc[1]) if isinstance(keys, Mapping) else None
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str) and name.strip() and name.isprintable() and len(name) <= 64:
            parts[1] = f"<{name}>"
        else:
            place = list(keys).index(loc[1]) + 1 if isinstance(keys, Mapping) and loc[1] in keys else 0
            parts[1] = f"<#{place}>" if place else "<key>"
    return parts


def _validate(data: Mapping[str, Any], source: str) -> SollolConfig:
    try:
        return SollolConfig.model_validate(dict(data))
    except ValidationError as e:
        raise ConfigError(_format_validation(e, source, data)) from None


def validation_message(err: ValidationError, data: Mapping[str, Any]) -> str:
    """A validation error as load_config words it (for update_config): secrets never shown."""
    return _format_validation(err, "update_config", data)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror})") from None


# what Kubernetes injects for a Service: SOLLOL_PORT=tcp://10.0.0.1:8000 (also for a Service named e.g.
# sollol-gateway: SOLLOL_GATEWAY_PORT=tcp://...), never a setting's value
_SERVICE_LINK = re.compile(r"^(tcp|udp|sctp)://[^\s/]+:\d+$", re.I)


def _sub_fields(name: str) -> Optional[set[str]]:
    """The keys of a table setting (routing_weights, cache, queue); None for a setting that is not a table
    of fixed keys (host_settings and api_keys are keyed by host and key name)."""
    annotation = SollolConfig.model_fields[name].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return set(annotation.model_fields)
    return None


def env_overrides(environ: Mapping[str, str], warnings: Optional[list[str]] = None) -> dict[str, Any]:
    """SOLLOL_GATEWAY_PORT=8001, SOLLOL_HOSTS=a:1,b:2, SOLLOL_ROUTING_WEIGHTS__LATENCY=0.5.

    A SOLLOL_* variable that names no setting is left out, and so is a Kubernetes service link (tcp://host:port)
    in a setting that is not text; each is described in `warnings` when a list is given. A bad value of a
    known setting is still an error (ConfigError, from load_config's validation).
    """
    out: dict[str, Any] = {}
    unknown: list[str] = []
    links: list[str] = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key in ("require_real_ollama",):  # test switch, not a setting
            continue
        parts = key.split("__")
        if parts[0] not in FIELD_NAMES or (len(parts) > 1 and (sub := _sub_fields(parts[0])) is not None
                                           and (len(parts) > 2 or parts[1] not in sub)):
            unknown.append(name)
            continue
        if len(parts) == 1 and not _is_text_field(parts[0]) and _SERVICE_LINK.match(raw.strip()):
            links.append(name)
            continue
        value: Any = raw
        if parts[0] == "hosts":
            value = [h for h in raw.split(",") if h.strip()]
        elif len(parts) > 1 or not _is_text_field(parts[0]):
            try:  # numbers, booleans, lists; a text setting (a token, a path) stays text: "123456" too
                value = json.loads(raw)
            except ValueError:
                value = raw
        target = out
        for p in parts[:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = value
    if warnings is not None:
        if unknown:
            warnings.append(f"environment: ignored {len(unknown)} SOLLOL_* variable(s) that name no setting: "
                            f"{', '.join(unknown)} (Kubernetes sets such variables for a Service named "
                            f"'sollol'; see sollol.toml.example for the settings)")
        if links:
            warnings.append(f"environment: ignored {', '.join(links)}: a service link (tcp://host:port), "
                            f"not a value for that setting")
    return out


def _is_text_field(name: str) -> bool:
    annotation: Any = SollolConfig.model_fields[name].annotation
    return annotation is str or annotation == Optional[str]


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(merged.get(k), Mapping):
            merged[k] = _merge(dict(merged[k]), v)
        else:
            merged[k] = v
    return merged


def load_config(
    config_path: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    search: bool = True,
    warnings: Optional[list[str]] = None,
) -> tuple[SollolConfig, Optional[Path]]:
    """Build the config from all sources; returns it and the TOML file used (None when none).

    What was ignored (unknown SOLLOL_* variables) is appended to `warnings` when a list is given: the caller
    logs it and shows it (SOLLOL(config_warnings=...) does both); without a list it is logged here.
    """
    environ = os.environ if environ is None else environ
    path = find_config_file(config_path) if (search or config_path) else None
    data: dict[str, Any] = {}
    if path is not None:
        data = read_toml(path)
        _validate(data, str(path))  # name the file in the message when the file is at fault
    found: list[str] = []
    env = env_overrides(environ, found)
    if warnings is not None:
        warnings.extend(found)
    else:
        for message in found:
            log.warning("%s", message)
    file_data = data
    if env:
        _validate(_merge(data, env), "environment (SOLLOL_*)")
        data = _merge(data, env)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if given:
        data = _merge(data, given)
    config = _validate(data, "command line")
    _withhold_given_secrets(config, file_data, _merge(env, given))
    if config.hosts_file:
        config.all_hosts()  # raises ConfigError naming the file and line
    if config.autobatch_min_batch_size > config.autobatch_max_batch_size:
        raise ConfigError("key 'autobatch_min_batch_size' is larger than 'autobatch_max_batch_size'")
    return config, path


def _withhold_given_secrets(config: SollolConfig, file_data: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Mark the secrets that came from the environment or the command line (`given`), so that save_config
    never writes them: the token (the file's own, if it had one, is written instead) and every key the
    file did not hold."""
    if given.get("admin_token") is not None and config.admin_token is not None:
        in_file = file_data.get("admin_token")
        config._withheld_token = (config.admin_token, in_file if isinstance(in_file, str) else None)
    keys = given.get("api_keys")
    if isinstance(keys, Mapping):
        file_keys = file_data.get("api_keys")
        kept = set(file_keys) if isinstance(file_keys, Mapping) else set()
        config._withheld_keys = frozenset(str(k) for k in keys if k not in kept)


def config_to_toml_dict(config: SollolConfig) -> dict[str, Any]:
    """Everything that is set, without None (TOML has no null), and without the secrets that came from the
    environment or the command line."""
    data = config.model_dump(exclude_none=True)
    withheld = config._withheld_token
    if withheld is not None and data.get("admin_token") == withheld[0]:
        if withheld[1] is None:
            data.pop("admin_token", None)
        else:
            data["admin_token"] = withheld[1]
    if config._withheld_keys and isinstance(data.get("api_keys"), dict):
        data["api_keys"] = {k: v for k, v in data["api_keys"].items() if k not in config._withheld_keys}
        if not data["api_keys"]:
            data.pop("api_keys")
    return data


PRIVATE_FILE_MODE = 0o600  # a saved config may hold the operator token and the client keys


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path`, readable by its owner only (whatever mode an earlier file had)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def save_config(config: SollolConfig, path: str | Path) -> Optional[Path]:
    """Write the config as TOML, mode 0600; an existing file is kept as PATH.bak (0600 too). Returns the
    backup path. Secrets given in the environment or on the command line are not written."""
    p = Path(path)
    backup = None
    if p.exists():
        backup = p.with_name(p.name + ".bak")
        _write_private(backup, p.read_bytes())
    tmp = p.with_name(p.name + ".tmp")
    _write_private(tmp, tomli_w.dumps(config_to_toml_dict(config)).encode())
    os.replace(tmp, p)
    return backup
