"""How a simulated node behaves (SimNodeSpec), the demo set, and specs given as JSON on the command line."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

import orjson

CACHE_MODES = ("lcp", "multiuser", "legacy")


@dataclass
class SimNodeSpec:
    """How one simulated node behaves. Times in milliseconds.

    Slots: every model has ``num_parallel`` slots (None: ``capacity`` for every model, embedding models
    included, which is how the simulator always behaved); with ``num_parallel`` set, embedding models get
    one slot, as in Ollama. A request holds one slot for its whole service time. ``cache_mode`` says which
    idle slot a request takes (see ``slots.SlotPool``); the part of the prompt a slot already holds costs no
    prefill time. A request whose runner options (num_ctx, num_batch, num_gpu ...) differ from the loaded
    runner's makes the node reload the model, as Ollama does: it waits for the requests running on the old
    runner, takes ``load_ms`` and empties every slot's cache.
    """

    name: str = "sim"
    latency_ms: float = 50.0  # service time once a slot is held (streaming: time to first chunk)
    capacity: int = 4  # slots per model when num_parallel is None
    failure_rate: float = 0.0  # probability of HTTP 500 {"error": "simulated failure"}
    tokens_per_s: float = 200.0  # streaming pace after the first chunk (<= 0: no delay)
    tokens: int = 8  # tokens in a chat/generate answer
    models: list[str] = field(default_factory=lambda: ["llama3.2:latest", "nomic-embed-text:latest"])
    loaded: Optional[list[str]] = None  # what /api/ps lists at start; None = same as models
    embed_dim: int = 16
    embed_ms_per_input: float = 0.0  # extra embed service time per input
    seed: int = 0  # seeds the failure RNG, so runs are reproducible
    port: int = 0  # 0 = ephemeral
    num_parallel: Optional[int] = None  # slots per loaded model (OLLAMA_NUM_PARALLEL); None = capacity
    max_queue: Optional[int] = None  # requests that may wait for a slot of one model; more get 503; None = no limit
    prefill_ms_per_kchar: float = 0.0  # prefill time per 1,000 prompt characters not in the slot's cache
    load_ms: float = 0.0  # time to (re)load a model (reported as load_duration)
    warm_load_ms: float = 1.0  # load_duration of an answer on a loaded model (its scheduling; never 0 on Ollama)
    report_cached_tokens: bool = True  # answers name the cached part of the prompt (prompt_eval_cached_count,
    # OpenAI cached_tokens, Anthropic cache_read_input_tokens); False: only the durations say it (Ollama 0.5.4)
    cache_mode: str = "lcp"  # "lcp" (Ollama >= 0.30), "multiuser" (< 0.30, OLLAMA_MULTIUSER_CACHE=1), "legacy"

    def __post_init__(self) -> None:
        if self.cache_mode not in CACHE_MODES:
            raise ValueError(f"cache_mode must be one of {', '.join(CACHE_MODES)}, not {self.cache_mode!r}")
        if self.num_parallel is not None and self.num_parallel < 1:
            raise ValueError("num_parallel must be at least 1 (or None)")
        if self.max_queue is not None and self.max_queue < 0:
            raise ValueError("max_queue must be at least 0 (or None)")


def demo_specs() -> list[SimNodeSpec]:
    """Four nodes of different speeds for --demo: fast (30 ms, 4 slots), medium (120 ms, 2),
    slow (600 ms, 1), flaky (40 ms, 2 slots, 15% failures). Every model is on at least two
    nodes, no node but "fast" has all of them. Prefill costs make a cache hit visible: a 20,000-character
    agent prompt takes 0.4 s to evaluate on "fast", 3 s on "slow", and nothing once a slot holds it."""
    llama, qwen, nomic = "llama3.2:latest", "qwen2.5:0.5b", "nomic-embed-text:latest"
    return [
        SimNodeSpec(name="fast", latency_ms=30, capacity=4, tokens_per_s=120, tokens=24,
                    models=[llama, qwen, nomic], seed=1, num_parallel=4, prefill_ms_per_kchar=20, load_ms=150),
        SimNodeSpec(name="medium", latency_ms=120, capacity=2, tokens_per_s=60, tokens=24,
                    models=[llama, nomic], seed=2, num_parallel=2, prefill_ms_per_kchar=50, load_ms=300),
        SimNodeSpec(name="slow", latency_ms=600, capacity=1, tokens_per_s=20, tokens=24,
                    models=[llama, qwen], loaded=[llama], seed=3, num_parallel=1, prefill_ms_per_kchar=150,
                    load_ms=600),
        SimNodeSpec(name="flaky", latency_ms=40, capacity=2, failure_rate=0.15, tokens_per_s=90, tokens=24,
                    models=[qwen, nomic], seed=4, num_parallel=2, prefill_ms_per_kchar=25, load_ms=200),
    ]


def spec_from_json(text: str) -> SimNodeSpec:
    """A SimNodeSpec from a JSON object of its fields; unknown fields are an error (typos are not ignored)."""
    data = orjson.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a spec must be a JSON object")
    known = {f.name for f in fields(SimNodeSpec)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown spec field(s): {', '.join(sorted(unknown))}")
    return SimNodeSpec(**data)
