"""What the tests share besides fixtures: constants, the simulated-cluster gateway defaults, waiting helpers.

Fixtures live in tests/conftest.py; the test modules import these with `from helpers import ...`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from sollol_core import SOLLOL

REPO = Path(__file__).resolve().parents[2]

CHAT_MODEL = "llama3.2"
EMBED_MODEL = "nomic-embed-text"
USER = [{"role": "user", "content": "why is the sky blue"}]

# Small enough that a failing host costs little, large enough for a busy 2-core machine.
GATEWAY_DEFAULTS: dict[str, Any] = dict(
    gateway_host="127.0.0.1",
    gateway_port=0,
    metrics_port=0,
    connect_timeout=2.0,
    chat_timeout=10.0,
    embedding_timeout=10.0,
    management_timeout=10.0,
    max_retries=3,
    retry_backoff_multiplier=0.05,
    shutdown_grace=1.0,
    health_check_interval=60.0,
    unhealthy_recheck_interval=5.0,
    adaptive_metrics_interval=60.0,
)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> Any:
    """Poll predicate until it returns a truthy value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def settled(sollol: SOLLOL) -> tuple:
    """The request log once no request is in flight (a stream's bookkeeping runs after its last byte)."""
    wait_until(lambda: sollol.proxy.active == 0, what="requests in flight to finish")
    return sollol.recent_requests()


def models_known(sollol: SOLLOL) -> bool:
    """True once the first adaptive round has learned every host's model list."""
    return all(h.models_available is not None for h in sollol.registry.hosts())


def make_client(sollol: SOLLOL, timeout: float = 20.0) -> httpx.Client:
    return httpx.Client(base_url=sollol.gateway_url, timeout=timeout, trust_env=False)
