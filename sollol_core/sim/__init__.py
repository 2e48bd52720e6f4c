"""Simulated Ollama servers: real HTTP servers on 127.0.0.1 that speak the Ollama API (native, OpenAI- and
Anthropic-compatible, as Ollama 0.14+ serves them).

Used by ``--demo`` (four nodes of different speeds, and ``SimClients`` traffic), by tests (failure
injection: errors, hangs, broken streams, busy and cannot-load answers, killed and revived nodes) and by
benchmarks, so they are lean: no access log, cached bytes for the static answers, and no work per request
beyond what the answer needs.

Timing model: each model on a node has slots (``num_parallel``, else ``capacity``). Chat, generate,
messages, responses and embed requests wait for a free slot of their model, in arrival order (like Ollama
with OLLAMA_NUM_PARALLEL), and hold it for their whole service time, streaming included, so latency under
load grows like a real server's. A slot remembers the prompt and answer it last served; a request pays
prefill only for the part of its prompt the chosen slot does not hold (``slots``, ``render``). A client
that goes away frees its slot (the handler is cancelled), as Ollama stops generating for a closed
connection.

Modules: spec (SimNodeSpec, demo_specs), node (NodeState: what a node keeps and does), server (SimNode: a node
served over HTTP, its routes assembled from the route modules), kv_slots, render, serving (the timing), one module per
API family (info, native, openai, responses, anthropic, management), cluster (SimCluster), clients
(SimClients, demo traffic), cli (``python -m sollol_core.sim``).
"""

from .cli import main
from .cluster import SimCluster
from .kv_slots import Prefill, SlotState
from .metadata import sim_embedding
from .server import SimNode
from .spec import SimNodeSpec, demo_specs
from .traffic import SimClients

__all__ = ["SimNodeSpec", "SimNode", "SimCluster", "SimClients", "SlotState", "Prefill", "sim_embedding",
           "demo_specs", "main"]
