"""SollolConfig: every knob, and where its value comes from.

Sources, lowest to highest: defaults < sollol.toml < SOLLOL_* environment variables < command-line flags.
Unknown keys in a file and bad values anywhere raise :class:`ConfigError`, whose message names the key and
the source, so the command line can print it and exit non-zero. Unknown SOLLOL_* variables are only warnings:
the environment is shared (Kubernetes puts SOLLOL_SERVICE_HOST, SOLLOL_PORT=tcp://... into every pod of a
namespace with a Service named `sollol`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

log = logging.getLogger("sollol.config")

ENV_PREFIX = "SOLLOL_"
DEFAULT_CONFIG_NAME = "sollol.toml"
STRATEGIES = ("performance", "p2c", "round_robin", "priority")


class RoutingWeights(BaseModel):
    """Weights of the `performance` score terms (lower score wins). Each term is normalised first."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    cpu_load: float = Field(0.3, ge=0, description="CPU load 0..1 of the host (local hosts only; 0.5 when unknown).")
    gpu_free_mem: float = Field(0.2, ge=0, description="1/(1 + free GPU GiB): 1.0 with no free memory; 0.5 when unknown.")
    priority: float = Field(0.1, ge=0, description="Host priority rank / 10 (0 is preferred).")
    latency: float = Field(0.2, ge=0, description="Latency EWMA in seconds.")
    success_rate: float = Field(0.2, ge=0, description="1 - success rate (EWMA).")
    in_flight: float = Field(0.2, ge=0, description="Requests in flight × latency in seconds: the queue a new request joins.")
    cold_model: float = Field(0.2, ge=0, description="1 when the host does not have the requested model loaded.")
    cache: float = Field(1.0, ge=0, description="Expected prefill seconds the host would still do: the part of the "
                                                "prompt it has not cached × its prefill rate. 0 ignores the cache.")


class HostSettings(BaseModel):
    """Per-host routing settings, kept in the config so that a saved file brings them back."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    priority: int = Field(0, ge=0, description="Rank: 0 is preferred first.")
    weight: float = Field(1.0, gt=0, allow_inf_nan=False, description="Capacity multiplier; a score is divided by it.")
    num_parallel: Optional[int] = Field(None, ge=1, le=1024,
                                        description="The host's OLLAMA_NUM_PARALLEL: requests one loaded model runs "
                                                    "at once (its slots). Unset: default_num_parallel.")


class CacheSettings(BaseModel):
    """Cache-aware placement: a shadow of what each host's slots hold."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = Field(True, description="Keep the shadow and place by it (the cache weight scales the term).")
    block_chars: int = Field(128, ge=16, le=4096, description="Characters per hashed block of a canonical prompt.")
    max_blocks_per_host: int = Field(65536, ge=64, description="Blocks the shadow keeps per host, all slots "
                                                                "and models together (8 bytes each).")
    displaced_per_host: int = Field(0, ge=0, le=1024, description="Displaced prompts remembered per host "
                                                                  "(Ollama >= 0.30 keeps them in host RAM); 0: none.")
    min_cover: float = Field(0.1, ge=0, le=1, description="A slot is reused when its common prefix covers more "
                                                          "than this share of the prompt; else the LRU slot.")
    active_s: float = Field(300.0, gt=0, description="A slot used within this many seconds holds a conversation "
                                                     "that is still going: a cold request does not evict it.")
    load_epsilon: float = Field(0.25, ge=0, description="Bounded load: no host holds more than (1 + epsilon) "
                                                        "times its share (by slots) of the requests in flight.")
    default_prefill_s_per_kchar: float = Field(0.5, gt=0, description="Prefill seconds per 1,000 uncached "
                                                                      "characters before a host is measured.")


class QueueSettings(BaseModel):
    """The gateway queue: requests that find no free slot wait here, by class."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    high_timeout_s: float = Field(60.0, gt=0, description="Longest wait of a `high` request (503 beyond).")
    interactive_timeout_s: float = Field(30.0, gt=0, description="Longest wait of an `interactive` request.")
    batch_timeout_s: float = Field(600.0, gt=0, description="Longest wait of a `batch` request or chunk.")
    max_depth: int = Field(1000, ge=1, description="Requests the queue holds; beyond, the lowest class is shed.")
    batch_share: float = Field(0.1, ge=0, le=1, description="Starvation guard: share of the slots freed that go "
                                                            "to waiting `batch` requests even when others wait.")


class ApiKey(BaseModel):
    """A client's key: its name in stats and logs, its priority class, its rate limit."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field(..., min_length=1, description="Shown in /api/stats, metrics and the dashboard.")
    priority: Literal["high", "interactive", "batch"] = Field("interactive", description="Class of its requests.")
    requests_per_minute: Optional[float] = Field(None, gt=0, description="Rate limit; 429 above. Unset: none.")


class SollolConfig(BaseModel):
    """All of SOLLOL's settings. Documented once, in sollol.toml.example."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # hosts
    hosts: list[str] = Field(default_factory=list, description="Ollama servers as host:port.")
    hosts_file: Optional[str] = Field(None, description="File with one host:port a line (# comments).")
    host_settings: dict[str, HostSettings] = Field(default_factory=dict,
                                                   description="Priority and weight by host:port.")
    # gateway
    gateway_host: str = Field("127.0.0.1", description="Address the gateway binds.")
    gateway_port: int = Field(8000, ge=0, le=65535, description="Port of the gateway.")
    admin_token: Optional[str] = Field(None, description="Token for operator endpoints when bound beyond loopback.")
    management_open: bool = Field(False, description="Beyond loopback, let anyone pull, push, create, copy and "
                                                     "delete models without the operator token.")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above).")
    # routing
    routing_strategy: Literal["performance", "p2c", "round_robin", "priority"] = "performance"
    routing_weights: RoutingWeights = Field(default_factory=RoutingWeights)
    # slots, cache, queue, clients
    default_num_parallel: Optional[int] = Field(None, ge=1, le=1024,
                                                description="Slots of a host without num_parallel in host_settings. "
                                                            "Unset: such a host is not limited by SOLLOL.")
    host_queue_depth: int = Field(0, ge=0, description="Requests allowed to wait inside a host beyond its slots.")
    cache: CacheSettings = Field(default_factory=CacheSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    api_keys: dict[str, ApiKey] = Field(default_factory=dict, description="Client keys; when any is set, "
                                                                          "inference endpoints require one.")
    # execution
    executor: Literal["async", "ray"] = Field("async", description="Where upstream calls run.")
    ray_workers: int = Field(2, ge=1, description="Number of Ray actors.")
    ray_address: Optional[str] = Field(None, description="Existing Ray cluster to join; None starts a local one.")
    ray_num_cpus: int = Field(2, ge=1, description="CPUs for a local Ray.")
    # batch
    dask_workers: int = Field(2, ge=1, description="Workers of the local Dask cluster.")
    dask_scheduler: Optional[str] = Field(None, description="External Dask scheduler, e.g. tcp://10.0.0.1:8786.")
    dask_threads_per_worker: int = Field(8, ge=1, description="Threads of each local Dask worker (chunks are I/O).")
    autobatch_enabled: bool = True
    autobatch_interval: float = Field(60.0, gt=0)
    autobatch_min_batch_size: int = Field(1, ge=1)
    autobatch_max_batch_size: int = Field(100, ge=1)
    batch_db: str = Field("sollol-batch.db", description="SQLite file of the durable batch queue.")
    batch_max_docs_per_request: int = Field(10000, ge=1, description="Documents one /api/embed/batch may carry.")
    batch_max_doc_chars: int = Field(100000, ge=1, description="Characters one batch document may have.")
    batch_chunk_size: int = Field(32, ge=1, le=1000, description="Documents per /api/embed call to a host.")
    batch_in_flight_per_host: int = Field(2, ge=1, description="Batch chunks one host works on at once.")
    batch_max_attempts: int = Field(3, ge=1, description="Host errors after which a document is marked failed.")
    # metrics and loops
    metrics_enabled: bool = True
    metrics_port: int = Field(9090, ge=0, le=65535)
    adaptive_metrics_enabled: bool = True
    adaptive_metrics_interval: float = Field(30.0, gt=0)
    health_check_enabled: bool = True
    health_check_interval: float = Field(120.0, gt=0)
    unhealthy_recheck_interval: float = Field(5.0, gt=0, description="How often an unhealthy host is probed.")
    # retries and timeouts
    max_retries: int = Field(3, ge=0)
    retry_backoff_multiplier: float = Field(0.5, ge=0)
    connect_timeout: float = Field(5.0, gt=0)
    chat_timeout: float = Field(300.0, gt=0)
    embedding_timeout: float = Field(60.0, gt=0)
    management_timeout: float = Field(3600.0, gt=0, description="pull/push/create may take long.")
    shutdown_grace: float = Field(10.0, ge=0, description="Seconds in-flight requests get to finish on stop.")
    # dashboard
    ui_refresh_hz: float = Field(4.0, gt=0, le=30)
    theme: str = "sollol-dark"
    log_file: str = Field("sollol.log", description="Where logs go while the dashboard owns the terminal.")

    @field_validator("hosts")
    @classmethod
    def _check_hosts(cls, hosts: list[str]) -> list[str]:
        return [normalize_host(h) for h in hosts]

    @field_validator("host_settings")
    @classmethod
    def _check_host_settings(cls, settings: dict[str, HostSettings]) -> dict[str, HostSettings]:
        return {normalize_host(h): v for h, v in settings.items()}

    @field_validator("batch_db", "log_file", "theme")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    def all_hosts(self) -> list[str]:
        """hosts plus those of hosts_file, in order, without duplicates."""
        result = list(self.hosts)
        if self.hosts_file:
            for h in read_hosts_file(self.hosts_file):
                if h not in result:
                    result.append(h)
        return result

    def is_loopback_only(self) -> bool:
        return self.gateway_host in ("127.0.0.1", "localhost", "::1") or self.gateway_host.startswith("127.")


FIELD_NAMES = set(SollolConfig.model_fields)


def normalize_host(value: str) -> str:
    """'10.0.0.2' -> '10.0.0.2:11434'; 'http://h:1/' -> 'h:1'. Raises ValueError on nonsense."""
    h = value.strip()
    for prefix in ("http://", "https://"):
        if h.startswith(prefix):
            h = h[len(prefix):]
    h = h.rstrip("/")
    if not h or " " in h or "/" in h:
        raise ValueError(f"not a host:port: {value!r}")
    if h.count(":") > 1 and not h.startswith("["):
        raise ValueError(f"not a host:port: {value!r} (write an IPv6 address in brackets: [fe80::1]:11434)")
    if ":" not in h or h.endswith("]"):
        h = f"{h}:11434"
    name, _, port = h.rpartition(":")
    if not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a host:port: {value!r}")
    return h


def read_hosts_file(path: str | Path) -> list[str]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"hosts file {p}: cannot read it ({e.strerror})") from e
    hosts = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            hosts.append(normalize_host(line))
        except ValueError as e:
            raise ConfigError(f"hosts file {p}, line {n}: {e}") from e
    return hosts


def parse_hosts_arg(value: str) -> tuple[list[str], Optional[str]]:
    """--hosts takes a file or a comma-separated list. Returns (hosts, hosts_file)."""
    if Path(value).is_file():
        return [], value
    if "/" in value or value.endswith((".txt", ".conf", ".list")):
        raise ConfigError(f"--hosts {value}: no such file (give a hosts file or host:port,host:port)")
    try:
        return [normalize_host(h) for h in value.split(",") if h.strip()], None
    except ValueError as e:
        raise ConfigError(f"--hosts: {e} (give a hosts file or host:port,host:port)") from e


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


def _format_validation(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
        else:
            lines.append(f"{source}: key '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _validate(data: Mapping[str, Any], source: str) -> SollolConfig:
    try:
        return SollolConfig.model_validate(dict(data))
    except ValidationError as e:
        raise ConfigError(_format_validation(e, source)) from None


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
    annotation = SollolConfig.model_fields[name].annotation
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
    if env:
        _validate(_merge(data, env), "environment (SOLLOL_*)")
        data = _merge(data, env)
    if overrides:
        data = _merge(data, {k: v for k, v in overrides.items() if v is not None})
    config = _validate(data, "command line")
    if config.hosts_file:
        config.all_hosts()  # raises ConfigError naming the file and line
    if config.autobatch_min_batch_size > config.autobatch_max_batch_size:
        raise ConfigError("key 'autobatch_min_batch_size' is larger than 'autobatch_max_batch_size'")
    return config, path


def config_to_toml_dict(config: SollolConfig) -> dict[str, Any]:
    """Everything that is set, without None (TOML has no null)."""
    return config.model_dump(exclude_none=True)


def save_config(config: SollolConfig, path: str | Path) -> Optional[Path]:
    """Write the config as TOML; an existing file is kept as PATH.bak. Returns the backup path."""
    p = Path(path)
    backup = None
    if p.exists():
        backup = p.with_name(p.name + ".bak")
        shutil.copy2(p, backup)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(tomli_w.dumps(config_to_toml_dict(config)).encode())
    os.replace(tmp, p)
    return backup
