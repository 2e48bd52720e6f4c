"""How fast each host evaluates prompts: the prefill rate the cache shadow learns from the hosts' answers
(feedback.read_answer), per host and model, and what it assumes where nothing was measured yet.

Not locked: the shadow (shadow.CacheShadow) reads and writes it under its own lock.
"""

from __future__ import annotations

from typing import Mapping, Optional

from ..config import CacheSettings
from .feedback import PrefillRate


class PrefillRates:
    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings  # read at each call, so live changes apply
        self._rates: dict[str, dict[str, PrefillRate]] = {}
        self._global: Optional[tuple[int, Optional[float]]] = None  # (version, mean over hosts), remembered
        self._version = 0

    def of(self, host: str, model: str) -> PrefillRate:
        """The rate learned for (host, model), made empty on first use (feedback.read_answer fills it)."""
        return self._rates.setdefault(host, {}).setdefault(model, PrefillRate())

    def learned(self) -> None:
        """A rate changed: the mean over hosts is made again when next read."""
        self._version += 1

    def seconds(self, host: str, model: str, chars: int) -> float:
        """Seconds the host would take to evaluate `chars` uncached characters of a prompt for `model`."""
        if chars <= 0:
            return 0.0
        return chars * self.per_char(host, model)

    def per_char(self, host: str, model: str) -> float:
        """Its measured rate, else its other models', else the mean of the measured hosts, else the default."""
        models = self._rates.get(host)
        if models:
            r = models.get(model)
            own = r.per_char() if r is not None else None
            if own is not None:
                return own
            mean = host_mean(models)
            if mean is not None:
                return mean
        cached = self._global
        if cached is None or cached[0] != self._version:
            means = [m for m in map(host_mean, self._rates.values()) if m is not None]
            cached = self._global = (self._version, sum(means) / len(means) if means else None)
        if cached[1] is not None:
            return cached[1]
        return self.settings.default_prefill_s_per_kchar / 1000.0

    def samples(self, host: str, model: str) -> int:
        """Evaluations the host's rate for `model` was learned from (0: a borrowed or default rate)."""
        r = (self._rates.get(host) or {}).get(model)
        return 0 if r is None or r.per_char() is None else max(1, r.cold + r.ttft_n)

    def host_s_per_kchar(self, host: str) -> Optional[float]:
        """The host's measured rate in seconds per 1,000 characters (mean over its models), or None."""
        mean = host_mean(self._rates.get(host) or {})
        return mean * 1000.0 if mean is not None else None

    def forget_host(self, host: str) -> bool:
        """Whether the host had rates (now forgotten)."""
        if self._rates.pop(host, None) is None:
            return False
        self._version += 1
        return True


def host_mean(models: Mapping[str, PrefillRate]) -> Optional[float]:
    rates = [r for r in (m.per_char() for m in models.values()) if r is not None]
    return sum(rates) / len(rates) if rates else None
