"""The one object a client request travels as, from the gateway route through every stage.

The route parses just enough (API family, model, stream, client, priority class, the parsed body); the
stages (admission, placement, attempt, outcome, relay, books) read it and add to it, and nothing reaches
back up. The canonical prompt (`prompt`) is made by the path, and only where placement can gain from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

from ..upstream.executor import Body
from .shapes import OLLAMA, ApiFamily

if TYPE_CHECKING:
    from ..prompt_cache.key import PromptKey
    from ..prompt_cache.runner import RunnerKey


class Priority(StrEnum):
    """The gateway queue's classes: a higher one goes first."""

    HIGH = "high"
    INTERACTIVE = "interactive"
    BATCH = "batch"


HIGH, INTERACTIVE, BATCH = Priority.HIGH, Priority.INTERACTIVE, Priority.BATCH
PRIORITY_CLASSES: tuple[Priority, ...] = (HIGH, INTERACTIVE, BATCH)  # first goes first
#: A class by its name (or itself: a StrEnum hashes as its value); what the queue reads on every request.
PRIORITY_OF: dict[str, Priority] = {p.value: p for p in PRIORITY_CLASSES}
#: Each class's rank: 0 goes first.
RANK_OF: dict[str, int] = {p.value: i for i, p in enumerate(PRIORITY_CLASSES)}


@dataclass(slots=True, eq=False)
class Call:
    """One client request as the request path sees it."""

    endpoint: str  # route name for metrics and the log, e.g. "/api/chat"
    method: str
    path: str  # upstream path
    body: Body
    model: Optional[str]
    stream: bool
    timeout: float
    sse: bool = False  # server-sent events (OpenAI, Anthropic) instead of NDJSON
    api: ApiFamily = OLLAMA  # error shape family
    data: Optional[dict[str, Any]] = None  # the parsed JSON body of an inference request (its prompt, options)
    session: Optional[str] = None  # an explicit session key the client gave (header, user, metadata.user_id)
    prompt: Optional["PromptKey"] = None  # canonical prompt key, made by the path where placement uses it
    priority: Priority = INTERACTIVE
    client: str = ""  # who sent it: an API key's name, else the client's address
    cost: float = 1.0  # what it is charged in the fair share between clients (an embed call: its inputs)
    embedding: bool = False  # an embedding request (embedding models run one request at a time)
    content_type: Optional[str] = None  # sent upstream as is when set (multipart bodies)
    gone: Optional[Callable[[], Awaitable[None]]] = None  # returns once the client left (a waiter then leaves)
    host_filter: Optional[Callable[[str], bool]] = None  # hosts this request may use (batch: its per-host cap)
    uses_slot: bool = True  # inference takes one of the model's slots; /api/show and management do not
    runner: Optional["RunnerKey"] = None  # the runner options it asks the host to run with (runner_options)
    note: str = ""  # what the gateway changed in it, for the request log ("num_ctx 2048 → 4096 (config)")
