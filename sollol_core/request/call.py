"""The one object a client request travels as, from the gateway route through every stage.

The route parses just enough (API family, model, stream, canonical prompt, client, priority class); the
stages (admission, placement, attempt, outcome, relay, books) read it and add to it, and nothing reaches
back up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

HIGH, INTERACTIVE, BATCH = "high", "interactive", "batch"
PRIORITY_CLASSES = (HIGH, INTERACTIVE, BATCH)  # first goes first


@dataclass
class Call:
    """One client request as the request path sees it."""

    endpoint: str  # route name for metrics and the log, e.g. "/api/chat"
    method: str
    path: str  # upstream path
    body: Optional[bytes]
    model: Optional[str]
    stream: bool
    timeout: float
    sse: bool = False  # server-sent events (OpenAI, Anthropic) instead of NDJSON
    api: str = "ollama"  # error shape family: ollama / openai / anthropic (api_errors)
    prompt: Any = None  # canonical prompt key (canonical.PromptKey) of an inference request, else None
    priority: str = INTERACTIVE  # high / interactive / batch
    client: str = ""  # who sent it: an API key's name, else the client's address
    cost: float = 1.0  # what it is charged in the fair share between clients (an embed call: its inputs)
    embedding: bool = False  # an embedding request (embedding models run one request at a time)
    content_type: Optional[str] = None  # sent upstream as is when set (multipart bodies)
    receive: Any = None  # the client's ASGI receive channel: a request waiting in the queue leaves when it closes
    host_filter: Any = None  # Optional[Callable[[str], bool]]: hosts this request may use (batch: its per-host cap)
    uses_slot: bool = True  # inference takes one of the model's slots; /api/show and management do not
