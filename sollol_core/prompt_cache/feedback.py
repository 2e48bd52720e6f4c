"""What a host's answer says about its prompt cache, and how fast the host prefills.

Native answers report `prompt_eval_count` (the whole prompt), `prompt_eval_duration` (only the newly evaluated
part) and `load_duration` (far above the host's warm value: the model was reloaded and every slot lost its
cache; runner.RunnerTable judges it, and says so in Feedback.reloaded); /v1 answers give only the time to the
first token. Per (host, model) a PrefillRate learns tokens per character and seconds per token
from cold evaluations, and reads the reused share of each answer as ``1 - (duration / s_per_token) / count``.
Where the answer names its cached prompt tokens (native `prompt_eval_cached_count`, OpenAI
`prompt_tokens_details.cached_tokens` or Responses `input_tokens_details.cached_tokens`, Anthropic
`cache_read_input_tokens`), that count is the reused share, no rate needed. read_answer compares the share
with the one the shadow predicted and says what kind of Correction it is; the shadow
(shadow.CacheShadow.observe) applies it to what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Mapping, Optional

# Ollama 0.5.4 reports a load_duration on every answer, 0.03-0.15 s on this CPU with the model loaded (its
# scheduling). Whether an answer was a reload is judged against the host's warm value (runner.RunnerTable,
# passed in Feedback.reloaded); where nobody judged it, only this much counts as one. A quicker reload shows
# as reuse predicted and none observed ("lost"), which forgets the same slots.
RELOAD_MIN_S = 1.0
RATE_ALPHA = 0.2  # weight of a new sample in the prefill-rate EWMAs
COLD_MAX_FRACTION = 0.25  # an evaluation predicted to reuse at most this share counts as a cold sample
LOST_MIN_PREDICTED = 0.3  # a prediction at least this large that the host contradicts means the cache was lost
MIN_SAMPLE_TOKENS = 16  # evaluations of fewer tokens are dominated by fixed costs: not learned from
TTFT_MIN_CHARS = 4000  # /v1 answers: only prompts this long say something about prefill through the TTFT
TTFT_MIN_COLD_S = 1.0  # ... and only when a cold prefill would take at least this long


class CorrectionKind(StrEnum):
    """What an answer said against the shadow's prediction."""

    NONE = "none"  # nothing learned
    COLD = "cold"  # a cold sample taught the prefill rate
    CONFIRMED = "confirmed"  # the predicted reuse happened
    UNVERIFIED = "unverified"  # reuse predicted, no rate yet to check it
    LOST = "lost"  # reuse predicted, none observed: the model's other slots are forgotten
    RELOADED = "reloaded"  # the answer shows a reload: the model's slots are forgotten
    UNEXPECTED = "unexpected"  # reuse observed where none was predicted

    @property
    def forgets_model(self) -> bool:
        """The host's cache of the model is gone: the shadow forgets what it held for it."""
        return self in (CorrectionKind.LOST, CorrectionKind.RELOADED)


@dataclass(frozen=True, slots=True)
class Feedback:
    """What an answer says about the host's cache (durations in seconds; None: not reported)."""

    prompt_eval_count: Optional[int] = None
    prompt_eval_duration_s: Optional[float] = None
    load_duration_s: Optional[float] = None
    ttft_s: Optional[float] = None
    reloaded: Optional[bool] = None  # the load_duration was far above the host's warm value; None: not judged
    cached_tokens: Optional[int] = None  # of the prompt, tokens the host reports it took from its cache
    prompt_tokens: Optional[int] = None  # the whole prompt's tokens from a /v1 usage (native: prompt_eval_count)

    @classmethod
    def from_ollama(cls, final: Mapping[str, Any], ttft_s: Optional[float] = None) -> Feedback:
        """From the final object of a native /api/chat or /api/generate answer (durations in ns)."""

        def num(name: str, scale: float = 1.0) -> Optional[float]:
            v = final.get(name) if isinstance(final, Mapping) else None
            return v / scale if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None

        count = num("prompt_eval_count")
        cached = num("prompt_eval_cached_count")
        return cls(int(count) if count is not None else None, num("prompt_eval_duration", 1e9),
                   num("load_duration", 1e9), ttft_s, cached_tokens=int(cached) if cached is not None else None)

    def reported_share(self, rate: PrefillRate) -> Optional[float]:
        """The reused share the answer names itself (cached tokens / prompt tokens); None when it names none.
        A zero is believed only from a host that has named a positive count before: Ollama's Responses
        API always says 0."""
        total = self.prompt_eval_count if self.prompt_eval_count is not None else self.prompt_tokens
        cached = self.cached_tokens
        if cached is None or not total or total <= 0 or cached < 0:
            return None
        if cached > 0:
            rate.reports_cached = True
        elif not rate.reports_cached:
            return None
        return min(1.0, cached / total)


@dataclass(frozen=True, slots=True)
class Correction:
    """What an answer said against the shadow (kind), and what the shadow did about it."""

    kind: CorrectionKind
    predicted: float  # predicted reused share
    observed: Optional[float]  # observed reused share; None when the answer cannot tell
    forgot: int = 0  # slot contents and displaced prompts forgotten
    corrected: bool = False  # the shadow was wrong (counted in host_view's corrections)


def _ewma(old: Optional[float], sample: float) -> float:
    return sample if old is None else old + RATE_ALPHA * (sample - old)


class PrefillRate:
    """Prefill model of one (host, model), learned from its answers."""

    __slots__ = ("tpc", "spt", "cold", "ttft_spc", "ttft_n", "reports_cached")

    def __init__(self) -> None:
        self.tpc: Optional[float] = None  # tokens per canonical character
        self.spt: Optional[float] = None  # prefill seconds per token
        self.cold = 0  # cold samples learned
        self.ttft_spc: Optional[float] = None  # seconds per char from /v1 time to first token (fallback)
        self.ttft_n = 0
        self.reports_cached = False  # the host's answers have named a positive cached-token count

    def per_char(self) -> Optional[float]:
        """Prefill seconds per canonical character; None until measured."""
        if self.tpc is not None and self.spt is not None:
            return self.tpc * self.spt
        return self.ttft_spc

    def observed_share(self, count: int, dur: float, chars: int) -> Optional[float]:
        """The share of a prompt of `chars` the host reused, read from a native answer; None without a rate."""
        if self.spt is None or self.spt <= 0:
            return None
        if self.tpc is not None and chars and count < 0.5 * self.tpc * chars:
            # the count covers only the newly evaluated tokens (some Ollama versions): compare it with the
            # whole prompt's expected count
            return max(0.0, min(1.0, 1.0 - count / (self.tpc * chars)))
        return max(0.0, min(1.0, 1.0 - (dur / self.spt) / count))

    def learn_cold(self, count: int, dur: float, chars: int, p: float) -> None:
        """A native evaluation of `count` tokens in `dur` s, of which the share `p` was predicted reused."""
        self.tpc = _ewma(self.tpc, count / chars)
        new_tokens = count * (1.0 - p)
        if new_tokens > 0 and dur > 0:
            self.spt = _ewma(self.spt, dur / new_tokens)
        self.cold += 1

    def learn_ttft(self, ttft: float, chars: int, p: float) -> None:
        """A /v1 time to first token bounds the prefill of the uncached part."""
        self.ttft_spc = _ewma(self.ttft_spc, ttft / (chars * (1.0 - p)))
        self.ttft_n += 1


@dataclass(frozen=True, slots=True)
class Reading:
    """What read_answer made of an answer: its kind, the reuse it showed, and whether the rate learned."""

    kind: CorrectionKind
    observed: Optional[float]
    learned: bool = False


def read_answer(rate: PrefillRate, fb: Feedback, p: float, chars: int) -> Reading:
    """Compare the reuse `p` predicted for a prompt of `chars` with what the answer `fb` shows, learning the
    host's prefill `rate` from cold evaluations on the way."""
    count, dur, load, ttft = fb.prompt_eval_count, fb.prompt_eval_duration_s, fb.load_duration_s, fb.ttft_s
    if isinstance(count, int) and count > 0 and isinstance(dur, (int, float)) and dur >= 0:
        native: Optional[tuple[int, float]] = (count, dur)
    else:
        native = None
    if fb.reloaded or (fb.reloaded is None and load is not None and load >= RELOAD_MIN_S):
        learned = False
        if native is not None and chars:
            rate.learn_cold(native[0], native[1], chars, 0.0)
            learned = True
        return Reading(CorrectionKind.RELOADED, 0.0, learned)
    reported = fb.reported_share(rate)
    if reported is not None:
        return _read_reported(rate, fb, native, reported, p, chars)
    if native is not None:
        count, dur = native
        observed = rate.observed_share(count, dur, chars)
        if p <= COLD_MAX_FRACTION:
            if observed is not None and observed >= p + 0.5 and count >= MIN_SAMPLE_TOKENS:
                return Reading(CorrectionKind.UNEXPECTED, observed)
            if count >= MIN_SAMPLE_TOKENS and chars:
                rate.learn_cold(count, dur, chars, p)
                return Reading(CorrectionKind.COLD, observed, True)
            return Reading(CorrectionKind.NONE, observed)
        return _judge(p, observed)
    if isinstance(ttft, (int, float)) and ttft >= 0 and chars:
        own = rate.per_char()
        if p <= COLD_MAX_FRACTION:
            if rate.spt is None and chars >= TTFT_MIN_CHARS:  # no native measurement: the TTFT bounds it
                rate.learn_ttft(ttft, chars, p)
                return Reading(CorrectionKind.COLD, None, True)
            return Reading(CorrectionKind.NONE, None)
        if own is not None and chars * own >= TTFT_MIN_COLD_S:
            return _judge(p, max(0.0, min(1.0, 1.0 - ttft / (chars * own))))
        return Reading(CorrectionKind.UNVERIFIED, None)
    return Reading(CorrectionKind.NONE, None)


def _read_reported(rate: PrefillRate, fb: Feedback, native: Optional[tuple[int, float]], reported: float,
                   p: float, chars: int) -> Reading:
    """The answer named its cached tokens: that is the reused share. The prefill rate learns from the newly
    evaluated part, whatever the prediction was."""
    learned = False
    if native is not None and chars:
        count, dur = native
        if count * (1.0 - reported) >= MIN_SAMPLE_TOKENS:
            rate.learn_cold(count, dur, chars, reported)
            learned = True
    elif isinstance(fb.ttft_s, (int, float)) and fb.ttft_s >= 0 and rate.spt is None \
            and chars * (1.0 - reported) >= TTFT_MIN_CHARS:
        rate.learn_ttft(fb.ttft_s, chars, reported)
        learned = True
    if p <= COLD_MAX_FRACTION:
        if reported >= p + 0.5:
            return Reading(CorrectionKind.UNEXPECTED, reported, learned)
        return Reading(CorrectionKind.COLD if learned else CorrectionKind.NONE, reported, learned)
    judged = _judge(p, reported)
    return Reading(judged.kind, reported, learned)


def _judge(p: float, observed: Optional[float]) -> Reading:
    """Reuse was predicted: did the host show it?"""
    if observed is None:
        return Reading(CorrectionKind.UNVERIFIED, None)
    if p >= LOST_MIN_PREDICTED and observed < p / 4:
        return Reading(CorrectionKind.LOST, observed)
    return Reading(CorrectionKind.CONFIRMED, observed)
