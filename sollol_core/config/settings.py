"""The settings themselves: SollolConfig and its sections, each field with its default, its bounds, its
description and whether update_config applies it at once (`setting(live=...)`)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator
from pydantic_core import PydanticUndefined

from .hosts import is_loopback_host, model_name, normalize_host, read_hosts_file

STRATEGIES = ("performance", "p2c", "round_robin", "priority")


def setting(default: Any = PydanticUndefined, *, live: bool, **field: Any) -> Any:
    """A pydantic Field that says whether it is live: `live=True` when a change made with update_config
    applies at once (the value is read on every use, or update_config hands it to the part that holds it),
    False when it is read only at start (takes effect on the next start). Every field of every settings
    model declares it; a test fails on one that does not."""
    return Field(default, json_schema_extra={LIVE_MARK: live}, **field)


LIVE_MARK = "live"


class RoutingWeights(BaseModel):
    """Weights of the `performance` score terms (lower score wins). Each term is normalised first."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    cpu_load: float = setting(0.3, live=True, ge=0,
                              description="CPU load 0..1 of the host (local hosts only; 0.5 when unknown).")
    gpu_free_mem: float = setting(0.2, live=True, ge=0,
                                  description="1/(1 + free GPU GiB): 1.0 with no free memory; 0.5 when unknown.")
    priority: float = setting(0.1, live=True, ge=0, description="Host priority rank / 10 (0 is preferred).")
    latency: float = setting(0.2, live=True, ge=0, description="Latency EWMA in seconds.")
    success_rate: float = setting(0.2, live=True, ge=0, description="1 - success rate (EWMA).")
    in_flight: float = setting(0.2, live=True, ge=0,
                               description="Requests in flight × latency in seconds: the queue a new request joins.")
    cold_model: float = setting(0.2, live=True, ge=0,
                                description="1 when the host does not have the requested model loaded.")
    cache: float = setting(1.0, live=True, ge=0,
                           description="Expected prefill seconds the host would still do: the part of the prompt "
                                       "it has not cached × its prefill rate. 0 ignores the cache.")


class HostSettings(BaseModel):
    """Per-host routing settings, kept in the config so that a saved file brings them back.

    update_config(host_settings=...) hands priority and weight to the registry for the hosts it names."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    priority: int = setting(0, live=True, ge=0, description="Rank: 0 is preferred first.")
    weight: float = setting(1.0, live=True, gt=0, allow_inf_nan=False,
                            description="Capacity multiplier; a score is divided by it.")
    num_parallel: Optional[int] = setting(None, live=True, ge=1, le=1024,
                                          description="The host's OLLAMA_NUM_PARALLEL: requests one loaded model "
                                                      "runs at once (its slots). Unset: default_num_parallel.")


class ModelSettings(BaseModel):
    """Runner options the gateway sets in every request for one model ([models."<name>"]), so that every
    client shares one runner on each host instead of making it reload (Ollama reloads a model whenever a
    request's runner options differ from the loaded runner's, and the reload drops every slot's cache).
    Unset options are passed on as the client sent them. Read on every request."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    num_ctx: Optional[int] = setting(None, live=True, ge=1, description="Context length, in tokens.")
    num_batch: Optional[int] = setting(None, live=True, ge=1, description="Prompt tokens evaluated at once.")
    num_gpu: Optional[int] = setting(None, live=True, ge=-1, description="Layers offloaded to the GPU(s).")
    main_gpu: Optional[int] = setting(None, live=True, ge=0, description="The GPU that holds small tensors.")
    use_mmap: Optional[bool] = setting(None, live=True, description="Map the model file into memory.")
    use_mlock: Optional[bool] = setting(None, live=True, description="Lock the model in RAM.")
    num_thread: Optional[int] = setting(None, live=True, ge=1, description="CPU threads of the runner.")

    def options(self) -> dict[str, Any]:
        """The options that are set, by Ollama's names."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class CacheSettings(BaseModel):
    """Cache-aware placement: a shadow of what each host's slots hold. One object, read on every use by the
    shadow, placement and the gateway: update_config changes it in place."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = setting(True, live=True,
                            description="Keep the shadow and place by it (the cache weight scales the term).")
    block_chars: int = setting(128, live=True, ge=16, le=4096,
                               description="Characters per hashed block of a canonical prompt.")
    min_prompt_chars: int = setting(512, live=True, ge=0,
                                    description="A request whose body is shorter skips cache-aware placement "
                                                "(the fast lane): its prefill is too cheap to place it by.")
    max_blocks_per_host: int = setting(65536, live=True, ge=64,
                                       description="Blocks the shadow keeps per host, all slots and models "
                                                   "together (8 bytes each).")
    displaced_per_host: int = setting(0, live=True, ge=0, le=1024,
                                      description="Displaced prompts remembered per host (Ollama >= 0.30 keeps "
                                                  "them in host RAM); 0: none.")
    min_cover: float = setting(0.1, live=True, ge=0, le=1,
                               description="A slot is reused when its common prefix covers more than this share "
                                           "of the prompt; else the LRU slot.")
    active_s: float = setting(300.0, live=True, gt=0,
                              description="A slot used within this many seconds holds a conversation that is "
                                          "still going: a cold request does not evict it.")
    load_epsilon: float = setting(0.25, live=True, ge=0,
                                  description="Bounded load: no host holds more than (1 + epsilon) times its "
                                              "share (by slots) of the requests in flight.")
    default_prefill_s_per_kchar: float = setting(0.5, live=True, gt=0,
                                                 description="Prefill seconds per 1,000 uncached characters "
                                                             "before a host is measured.")


class QueueSettings(BaseModel):
    """The gateway queue: requests that find no free slot wait here, by class. Read on every use."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    high_timeout_s: float = setting(60.0, live=True, gt=0, description="Longest wait of a `high` request "
                                                                       "(503 beyond).")
    interactive_timeout_s: float = setting(30.0, live=True, gt=0,
                                           description="Longest wait of an `interactive` request.")
    batch_timeout_s: float = setting(600.0, live=True, gt=0,
                                     description="Longest wait of a `batch` request or chunk.")
    max_depth: int = setting(1000, live=True, ge=1,
                             description="Requests the queue holds; beyond, the lowest class is shed.")
    batch_share: float = setting(0.1, live=True, ge=0, le=1,
                                 description="Starvation guard: share of the slots freed that go to waiting "
                                             "`batch` requests even when others wait.")
    interactive_reserve: int = setting(1, live=True, ge=0,
                                       description="Slots of each host that has two or more held back from "
                                                   "`batch` requests while interactive or high requests for that "
                                                   "model waited within reserve_window_s.")
    reserve_window_s: float = setting(10.0, live=True, gt=0,
                                      description="How long after an interactive request waited the reserve "
                                                  "holds.")
    batch_pipeline: int = setting(1, live=True, ge=0,
                                  description="Batch embedding requests (the batch queue's chunks) a host with "
                                              "a single slot for the model may hold beyond it, waiting inside the "
                                              "host, so it never idles for a round trip between chunks; none "
                                              "while the reserve holds. 0: an interactive request there waits for "
                                              "one chunk at most.")
    fair_share: bool = setting(True, live=True,
                               description="While other clients wait for a model, a client is granted no more "
                                           "than its fair share of the model's slots; while others used the "
                                           "model within fair_window_s, a client asking more than its share of "
                                           "the model's capacity leaves one slot (plus what they hold) free for "
                                           "each of those asking less, on the fastest hosts (alone, it may use "
                                           "all).")
    fair_window_s: float = setting(10.0, live=True, gt=0,
                                   description="A client that sent a request for a model within this many "
                                               "seconds counts as using it (fair_share).")
    preempt_batch: bool = setting(False, live=True,
                                  description="A waiting `high` request may take the slot of a `batch` request "
                                              "whose answer has not started; that one goes back to the queue.")


class ApiKey(BaseModel):
    """A client's key: its name in stats and logs, its priority class, its rate limit. Read on every request."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = setting(..., live=True, min_length=1, description="Shown in /api/stats, metrics and the dashboard.")
    priority: Literal["high", "interactive", "batch"] = setting("interactive", live=True,
                                                                description="Class of its requests.")
    requests_per_minute: Optional[float] = setting(None, live=True, gt=0,
                                                   description="Rate limit; 429 above. Unset: none.")
    max_queued_docs: Optional[int] = setting(None, live=True, ge=1,
                                             description="Batch documents this key may have waiting or in "
                                                         "progress at once (429 above). Unset: "
                                                         "batch_max_queued_docs_per_key.")


class SollolConfig(BaseModel):
    """All of SOLLOL's settings. Documented once, in sollol.toml.example; `live` as `setting` says."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # hosts
    hosts: list[str] = setting(default_factory=list, live=True,
                               description="Ollama servers as host:port (update_config adds and removes them).")
    hosts_file: Optional[str] = setting(None, live=False, description="File with one host:port a line (# comments).")
    host_settings: dict[str, HostSettings] = setting(default_factory=dict, live=True,
                                                     description="Priority, weight and slots by host:port.")
    # gateway
    gateway_host: str = setting("127.0.0.1", live=False, description="Address the gateway binds.")
    gateway_port: int = setting(8000, live=False, ge=0, le=65535, description="Port of the gateway.")
    admin_token: Optional[str] = setting(None, live=True, repr=False, min_length=1,
                                         description="Operator token: once set, every operator route needs it, "
                                                     "loopback included. Unset: operator routes are open on "
                                                     "a loopback bind only.")
    management_open: bool = setting(False, live=True,
                                    description="Let clients pull, push, create, copy and delete models, and "
                                                "unload them on every host, without the operator token.")
    max_body_bytes: int = setting(32 * 1024 * 1024, live=True, ge=1024,
                                  description="Largest request body accepted (413 above).")
    allowed_hosts: list[str] = setting(default_factory=list, live=True,
                                       description="On a loopback bind, Host names accepted besides loopback "
                                                   "addresses, localhost and this machine's name (a name, "
                                                   "'.example.com' for a domain and its subdomains, '*' any).")
    allowed_origins: list[str] = setting(default_factory=list, live=True,
                                         description="Browser origins allowed to call the gateway besides "
                                                     "loopback ones (scheme://host[:port], "
                                                     "'https://*.example.com', '*' any).")
    # connections
    header_timeout_s: float = setting(10.0, live=False, gt=0,
                                      description="A request head must arrive within this many seconds of "
                                                  "its first byte (408 and closed otherwise).")
    body_timeout_s: float = setting(30.0, live=False, gt=0,
                                    description="A request body must arrive within this many seconds, plus "
                                                "the time its size takes at body_min_bytes_per_s; also the "
                                                "longest a client may leave an answer unread.")
    body_min_bytes_per_s: float = setting(16384.0, live=False, gt=0,
                                          description="The slowest body accepted, in bytes per second, beyond "
                                                      "body_timeout_s.")
    idle_timeout_s: float = setting(30.0, live=False, gt=0,
                                    description="A connection with no request in progress (new, or kept "
                                                "alive between requests) is closed after this many seconds.")
    max_connections: int = setting(1024, live=False, ge=1,
                                   description="Client connections open at once; a new one beyond gets 503.")
    # routing
    routing_strategy: Literal["performance", "p2c", "round_robin", "priority"] = setting(
        "performance", live=True, description="performance, p2c, round_robin or priority.")
    routing_weights: RoutingWeights = setting(default_factory=RoutingWeights, live=True,
                                              description="Weights of the performance score's terms.")
    # slots, cache, queue, clients
    default_num_parallel: Optional[int] = setting(None, live=True, ge=1, le=1024,
                                                  description="Slots of a host without num_parallel in "
                                                              "host_settings. Unset: such a host is not limited "
                                                              "by SOLLOL.")
    host_queue_depth: int = setting(0, live=True, ge=0,
                                    description="Requests allowed to wait inside a host beyond its slots.")
    learn_slots: bool = setting(True, live=True,
                                description="Learn the slots of each (host, model) without a num_parallel of "
                                            "its own from the time its answers say they waited inside it.")
    models: dict[str, ModelSettings] = setting(default_factory=dict, live=True,
                                               description="Runner options set in every request, by model.")
    cache: CacheSettings = setting(default_factory=CacheSettings, live=True,
                                   description="Cache-aware placement.")
    queue: QueueSettings = setting(default_factory=QueueSettings, live=True, description="The gateway queue.")
    api_keys: dict[str, ApiKey] = setting(default_factory=dict, live=True, repr=False,
                                          description="Client keys; when any is set, every client route "
                                                      "(inference, listings, batch) requires one.")
    max_tracked_clients: int = setting(256, live=True, ge=1,
                                       description="Clients the books keep apart (queue, /api/stats, metrics "
                                                   "labels); the rest count as one client, 'other'.")
    tracked_client_idle_s: float = setting(900.0, live=True, gt=0,
                                           description="A client with nothing in flight for this long leaves "
                                                       "the books.")
    # execution
    executor: Literal["async", "ray"] = setting("async", live=False, description="Where upstream calls run.")
    ray_workers: int = setting(2, live=False, ge=1, description="Number of Ray actors.")
    ray_address: Optional[str] = setting(None, live=False,
                                         description="Existing Ray cluster to join; None starts a local one.")
    ray_num_cpus: int = setting(2, live=False, ge=1, description="CPUs for a local Ray.")
    # batch
    dask_workers: int = setting(2, live=False, ge=1, description="Workers of the local Dask cluster.")
    dask_scheduler: Optional[str] = setting(None, live=False,
                                            description="External Dask scheduler, e.g. tcp://10.0.0.1:8786.")
    dask_threads_per_worker: int = setting(8, live=False, ge=1,
                                           description="Threads of each local Dask worker (chunks are I/O).")
    autobatch_enabled: bool = setting(True, live=True, description="Start batches on the interval and by size.")
    autobatch_interval: float = setting(60.0, live=True, gt=0, description="Seconds between batch starts.")
    autobatch_min_batch_size: int = setting(1, live=True, ge=1,
                                            description="Documents that must wait for the interval to start one.")
    autobatch_max_batch_size: int = setting(100, live=True, ge=1,
                                            description="Documents in one batch; this many waiting start one.")
    batch_db: str = setting("sollol-batch.db", live=False, description="SQLite file of the durable batch queue.")
    batch_max_docs_per_request: int = setting(10000, live=True, ge=1,
                                              description="Documents one /api/embed/batch may carry.")
    batch_max_doc_chars: int = setting(100000, live=True, ge=1,
                                       description="Characters one batch document may have.")
    batch_max_queued_docs_per_key: int = setting(100000, live=True, ge=1,
                                                 description="With api_keys: documents one key may have "
                                                             "waiting or in progress at once (429 above).")
    batch_retention_hours: float = setting(72.0, live=True, ge=0,
                                           description="Finished batch jobs, their documents and results are "
                                                       "deleted from batch_db this long after they finish "
                                                       "(0: kept for ever).")
    batch_chunk_size: int = setting(32, live=True, ge=1, le=1000,
                                    description="Documents per /api/embed call to a host.")
    batch_in_flight_per_host: int = setting(2, live=True, ge=1, description="Batch chunks one host works on at once.")
    batch_max_attempts: int = setting(3, live=True, ge=1,
                                      description="Host errors after which a document is marked failed.")
    # metrics and loops
    metrics_enabled: bool = setting(True, live=False, description="Serve Prometheus metrics on metrics_port.")
    metrics_port: int = setting(9090, live=False, ge=0, le=65535, description="Port of the metrics server.")
    adaptive_metrics_enabled: bool = setting(True, live=False,
                                             description="Read models, CPU load and GPU memory of the hosts.")
    adaptive_metrics_interval: float = setting(30.0, live=True, gt=0, description="Seconds between those rounds.")
    health_check_enabled: bool = setting(True, live=False, description="Check every host's health in rounds.")
    health_check_interval: float = setting(120.0, live=True, gt=0, description="Seconds between health checks.")
    unhealthy_recheck_interval: float = setting(5.0, live=True, gt=0,
                                                description="How often an unhealthy host is probed.")
    # retries and timeouts
    max_retries: int = setting(3, live=True, ge=0, description="Retries on other hosts before the first byte.")
    retry_backoff_multiplier: float = setting(0.5, live=True, ge=0,
                                              description="Backoff before retrying a host: this × 2^(attempt-1).")
    connect_timeout: float = setting(5.0, live=False, gt=0,
                                     description="Seconds to connect to a host (the connection pool takes it at "
                                                 "start).")
    chat_timeout: float = setting(300.0, live=True, gt=0, description="Longest wait for the next byte of a chat.")
    embedding_timeout: float = setting(60.0, live=True, gt=0,
                                       description="Longest wait for the next byte of an embedding.")
    management_timeout: float = setting(3600.0, live=True, gt=0, description="pull/push/create may take long.")
    shutdown_grace: float = setting(10.0, live=False, ge=0,
                                    description="Seconds in-flight requests get to finish on stop.")
    # dashboard
    ui_refresh_hz: float = setting(4.0, live=False, gt=0, le=30, description="Dashboard redraws per second.")
    theme: str = setting("sollol-dark", live=False,
                         description="Dashboard theme (the dashboard's theme picker applies its own choice at once).")
    log_file: str = setting("sollol.log", live=False,
                            description="Where logs go while the dashboard owns the terminal.")

    @field_validator("hosts")
    @classmethod
    def _check_hosts(cls, hosts: list[str]) -> list[str]:
        return [normalize_host(h) for h in hosts]

    @field_validator("host_settings")
    @classmethod
    def _check_host_settings(cls, settings: dict[str, HostSettings]) -> dict[str, HostSettings]:
        return {normalize_host(h): v for h, v in settings.items()}

    @field_validator("models")
    @classmethod
    def _check_models(cls, models: dict[str, ModelSettings]) -> dict[str, ModelSettings]:
        return {model_name(m): v for m, v in models.items()}

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
        return is_loopback_host(self.gateway_host)

    # where the secrets came from (load_config): those from the environment or the command line are never
    # written by save_config; the file's own value (when it had one) is written in their place
    _withheld_token: Optional[tuple[str, Optional[str]]] = PrivateAttr(default=None)  # (given, file's)
    _withheld_keys: frozenset[str] = PrivateAttr(default=frozenset())


SECRET_FIELDS = ("admin_token", "api_keys")


FIELD_NAMES = set(SollolConfig.model_fields)


def declared_live(model: type[BaseModel], name: str) -> Optional[bool]:
    """What the field declares through `setting(live=...)`; None when it declares nothing."""
    extra = model.model_fields[name].json_schema_extra
    if not isinstance(extra, dict) or not isinstance(extra.get(LIVE_MARK), bool):
        return None
    return bool(extra[LIVE_MARK])


def is_live(name: str) -> bool:
    """True when update_config applies a change of the SollolConfig field at once (see `setting`)."""
    return declared_live(SollolConfig, name) is True


LIVE_FIELDS = frozenset(name for name in SollolConfig.model_fields if is_live(name))
