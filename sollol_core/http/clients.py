"""Client keys: which key a request carries, the client it names, its priority class and its rate.

With `[api_keys]` configured, every client route needs a key (`Authorization: Bearer <key>`, which the
Ollama, OpenAI and Anthropic clients all send, or Anthropic's `x-api-key`); the key names the client and its
class, and may carry a rate limit. Without keys, a client is its address. `X-SOLLOL-Priority` chooses the
class: freely without keys, at most the key's own class with them (a batch key cannot jump the queue).

A key is looked up by its SHA-256 digest in a table made once per change of `api_keys` (the setting is live),
so the lookup takes the same time whichever key, or none, matches, and the number of keys does not add to
it. Keys are never written anywhere; only the client's name is.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Mapping, Optional

from ..config import ApiKey, SollolConfig
from ..errors import ClientRefused
from ..request.call import INTERACTIVE, PRIORITY_CLASSES, Priority

BURST_S = 10.0  # a rate-limited key may spend this many seconds' worth of requests at once
_RANK = {p.value: i for i, p in enumerate(PRIORITY_CLASSES)}
_CLASSES = {p.value: p for p in PRIORITY_CLASSES}


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


def bearer(headers: Mapping[str, str]) -> str:
    """The credential of `Authorization: Bearer <x>` (any case of the scheme); '' when there is none."""
    auth = headers.get("authorization")
    if not auth:
        return ""
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def given_key(headers: Mapping[str, str]) -> str:
    """The key a request carries: a bearer credential, else Anthropic's x-api-key; '' when none."""
    return bearer(headers) or headers.get("x-api-key", "").strip()


def asked_priority(headers: Mapping[str, str]) -> Optional[Priority]:
    """The class X-SOLLOL-Priority asks for; None when absent; ClientRefused (400) when it names none."""
    raw = headers.get("x-sollol-priority")
    if raw is None:
        return None
    asked = raw.strip().lower()
    if not asked:
        return None
    found = _CLASSES.get(asked)
    if found is None:
        raise ClientRefused(400, f"X-SOLLOL-Priority must be one of {', '.join(PRIORITY_CLASSES)} "
                                 f"(got {asked[:40]!r})")
    return found


def class_of(own: str, asked: Optional[Priority]) -> Priority:
    """A key's class, lowered (never raised) by what the request asked for."""
    if asked is not None and _RANK[asked] > _RANK[own]:
        return asked
    return _CLASSES[own]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class ClientKeys:
    """The configured keys, looked up by digest; their rate buckets."""

    def __init__(self, config: SollolConfig) -> None:
        self.config = config
        self._source: Optional[dict[str, ApiKey]] = None
        self._size = -1
        self._by_digest: dict[bytes, tuple[str, ApiKey]] = {}
        self._buckets: dict[str, _Bucket] = {}

    @property
    def required(self) -> bool:
        return bool(self.config.api_keys)

    def _table(self) -> dict[bytes, tuple[str, ApiKey]]:
        keys = self.config.api_keys
        if keys is not self._source or len(keys) != self._size:  # the setting is live: follow it
            self._by_digest = {_digest(k): (k, entry) for k, entry in keys.items()}
            self._source, self._size = keys, len(keys)
            self._buckets = {k: b for k, b in self._buckets.items() if k in keys}
        return self._by_digest

    def find(self, given: str) -> Optional[tuple[str, ApiKey]]:
        """(key, its entry) when `given` is a configured key, else None."""
        if not given:
            return None
        return self._table().get(_digest(given))

    def take(self, key: str, entry: ApiKey) -> None:
        """Count one request against the key's rate; ClientRefused (429, Retry-After) above it."""
        per_minute = entry.requests_per_minute
        if not per_minute:
            return
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != per_minute / 60.0:
            bucket = self._buckets[key] = _Bucket(per_minute)
        wait = bucket.take()
        if wait is not None:
            raise ClientRefused(429, f"client {entry.name} is over its limit of {per_minute:g} requests per "
                                     f"minute", retry_after=wait)

    def identify(self, headers: Mapping[str, str], address: str) -> Client:
        """The request's client and class (its rate counted); raises ClientRefused."""
        asked = asked_priority(headers)
        if not self.config.api_keys:
            return Client(address or "anonymous", asked or INTERACTIVE)
        given = given_key(headers)
        if not given:
            raise ClientRefused(401, MISSING_KEY)
        found = self.find(given)
        if found is None:
            raise ClientRefused(401, UNKNOWN_KEY)
        key, entry = found
        self.take(key, entry)
        return Client(entry.name, class_of(entry.priority, asked))


MISSING_KEY = "this gateway needs an API key: send 'Authorization: Bearer <key>' (or x-api-key)"
UNKNOWN_KEY = "unknown API key; ask the operator for one"
