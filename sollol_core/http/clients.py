"""Who sent a request, and in which priority class it waits.

With `[api_keys]` configured, inference endpoints need a key (`Authorization: Bearer <key>`, which the
Ollama, OpenAI and Anthropic clients all send, or Anthropic's `x-api-key`); the key names the client and its
class, and may carry a rate limit. Without keys, a client is its address. `X-SOLLOL-Priority` chooses the
class: freely without keys, at most the key's own class with them (a batch key cannot jump the queue).
Keys are compared in constant time and never written anywhere; only the client's name is.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Mapping, Optional

from ..config import SollolConfig
from ..errors import ClientRefused
from ..request.call import INTERACTIVE, PRIORITY_CLASSES

BURST_S = 10.0  # a rate-limited key may spend this many seconds' worth of requests at once


@dataclass(frozen=True)
class Client:
    name: str
    priority: str


class _Bucket:
    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * BURST_S)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> Optional[float]:
        """None when a request may go now, else the seconds until it may."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


def _given_key(headers: Mapping[str, str]) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip()


class ClientKeys:
    def __init__(self, config: SollolConfig) -> None:
        self.config = config
        self._buckets: dict[str, _Bucket] = {}

    @property
    def required(self) -> bool:
        return bool(self.config.api_keys)

    def identify(self, headers: Mapping[str, str], address: str) -> Client:
        """The request's client and class; raises ClientRefused."""
        asked = headers.get("x-sollol-priority", "").strip().lower()
        if asked and asked not in PRIORITY_CLASSES:
            raise ClientRefused(400, f"X-SOLLOL-Priority must be one of {', '.join(PRIORITY_CLASSES)} "
                                     f"(got {asked!r})")
        keys = self.config.api_keys
        if not keys:
            return Client(address or "anonymous", asked or INTERACTIVE)
        given = _given_key(headers)
        if not given:
            raise ClientRefused(401, "this gateway needs an API key: send 'Authorization: Bearer <key>' "
                                     "(or x-api-key)")
        found = None
        for key, entry in keys.items():
            if hmac.compare_digest(key.encode(), given.encode()):
                found = (key, entry)
        if found is None:
            raise ClientRefused(401, "unknown API key; ask the operator for one")
        key, entry = found
        if entry.requests_per_minute:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.rate != entry.requests_per_minute / 60.0:
                bucket = self._buckets[key] = _Bucket(entry.requests_per_minute)
            wait = bucket.take()
            if wait is not None:
                raise ClientRefused(429, f"client {entry.name} is over its limit of "
                                         f"{entry.requests_per_minute:g} requests per minute", retry_after=wait)
        priority: str = entry.priority
        if asked and PRIORITY_CLASSES.index(asked) > PRIORITY_CLASSES.index(priority):
            priority = asked  # a lower class than the key's is always allowed
        return Client(entry.name, priority)
