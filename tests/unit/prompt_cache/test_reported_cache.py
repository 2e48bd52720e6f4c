"""Answers that name their cached prompt tokens (native prompt_eval_cached_count, OpenAI / Responses
cached_tokens, Anthropic cache_read_input_tokens) correct the shadow by that count, without a prefill rate."""

from __future__ import annotations

import random

import orjson
import pytest

from sollol_core.config import CacheSettings
from sollol_core.prompt_cache.canonical import prompt_key
from sollol_core.prompt_cache.feedback import CorrectionKind, Feedback
from sollol_core.prompt_cache.key import PromptKey
from sollol_core.prompt_cache.shadow import CacheShadow
from sollol_core.request.usage import usage_from

M = "m:latest"


def words(seed: int, n: int) -> str:
    rnd = random.Random(seed)
    return " ".join(rnd.choice(["alpha", "beta", "gamma", "delta", "eps", "zeta"]) for _ in range(n))


def chat(*contents: str) -> PromptKey:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": c} for i, c in enumerate(contents)]
    return prompt_key("/api/chat", {"model": "m", "messages": msgs}, block_chars=32)


def two_conversations() -> tuple[CacheShadow, PromptKey, PromptKey]:
    """Conversations a and b each in one slot of host h; no prefill rate measured."""
    sh = CacheShadow(CacheSettings())
    a, b = chat(words(1, 200)), chat(words(2, 200))
    sh.complete(sh.place("h", a, 2))
    sh.complete(sh.place("h", b, 2))
    return sh, a, b


def follow_up() -> PromptKey:
    return chat(words(1, 200), "answer", "next question")


def test_a_reported_count_confirms_reuse_without_a_rate():
    sh, _, _ = two_conversations()
    assert sh.prefill_rate("h") is None
    p = sh.place("h", follow_up(), 2)
    assert p.fraction > 0.5
    total = 300
    cached = int(total * p.fraction)
    c = sh.observe(p, Feedback(total, 0.0, 0.0, None, cached_tokens=cached))
    assert c.kind is CorrectionKind.CONFIRMED and c.observed == pytest.approx(cached / total)
    assert p.observed_chars == round(cached / total * p.key.chars)
    # without the count, the same answer says nothing: no rate to read the duration with
    sh2, _, _ = two_conversations()
    p2 = sh2.place("h", follow_up(), 2)
    assert sh2.observe(p2, Feedback(total, 0.0, 0.0, None)).kind is CorrectionKind.UNVERIFIED


def test_a_reported_zero_where_reuse_was_predicted_forgets_the_models_slots():
    sh = CacheShadow(CacheSettings())
    first = sh.place("h", chat(words(9, 100)), 2)  # this host names positive counts: its zeros are believed
    sh.observe(first, Feedback(100, 0.01, 0.0, None, cached_tokens=3))
    sh.release(first, failed=True)
    a, b = chat(words(1, 200)), chat(words(2, 200))
    sh.complete(sh.place("h", a, 2))
    sh.complete(sh.place("h", b, 2))
    p = sh.place("h", follow_up(), 2)
    assert p.fraction > 0.5
    c = sh.observe(p, Feedback(300, 0.0, 0.0, None, cached_tokens=0))
    assert c.kind is CorrectionKind.LOST and c.corrected and c.forgot >= 1
    assert sh.match("h", b, 2).cached_chars == 0


def test_a_zero_from_a_host_that_never_named_a_count_is_not_evidence():
    """Ollama's Responses API always reports cached_tokens 0."""
    sh, _, b = two_conversations()
    p = sh.place("h", follow_up(), 2)
    c = sh.observe(p, Feedback(None, None, None, 0.5, prompt_tokens=300, cached_tokens=0))
    assert c.kind is CorrectionKind.UNVERIFIED and c.forgot == 0
    assert sh.match("h", b, 2).cached_chars == b.chars


def test_a_reported_count_where_none_was_predicted_is_unexpected_and_teaches_the_rate():
    sh = CacheShadow(CacheSettings())
    k = chat(words(7, 300))
    p = sh.place("h", k, 2)
    assert p.cached_chars == 0
    c = sh.observe(p, Feedback(400, 100 * 0.002, 0.0, None, cached_tokens=300))
    assert c.kind is CorrectionKind.UNEXPECTED and c.observed == pytest.approx(0.75)
    rate = sh.prefill_rate("h")
    assert rate is not None  # learned from the 100 new tokens: 2 ms each
    assert sh.prefill_s("h", M, 1000) == pytest.approx(1000 * (400 / k.chars) * 0.002, rel=0.01)


def sse(*events: dict) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)


def test_usage_reads_cached_tokens_in_every_shape():
    native = orjson.dumps({"done": True, "eval_count": 4, "prompt_eval_count": 80, "prompt_eval_cached_count": 64,
                           "prompt_eval_duration": 1000, "eval_duration": 1000, "load_duration": 1,
                           "total_duration": 3000})
    u = usage_from(native)
    assert (u.prompt_eval_count, u.cached_tokens) == (80, 64)
    openai = sse({"choices": [], "usage": {"prompt_tokens": 80, "completion_tokens": 4,
                                           "prompt_tokens_details": {"cached_tokens": 60}}})
    u = usage_from(openai + b"data: [DONE]\n\n")
    assert (u.eval_count, u.prompt_tokens, u.cached_tokens) == (4, 80, 60)
    responses = sse({"type": "response.completed", "response": {"usage": {
        "input_tokens": 80, "input_tokens_details": {"cached_tokens": 50}, "output_tokens": 4}}})
    u = usage_from(responses)
    assert (u.prompt_tokens, u.cached_tokens) == (80, 50)
    anthropic = sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                     "usage": {"input_tokens": 20, "cache_read_input_tokens": 60, "output_tokens": 4}},
                    {"type": "message_stop"})
    u = usage_from(anthropic)
    assert (u.prompt_tokens, u.cached_tokens) == (80, 60)  # input_tokens excludes the cache read
    fb = u.feedback()
    assert (fb.prompt_tokens, fb.cached_tokens) == (80, 60)
    plain = sse({"choices": [], "usage": {"prompt_tokens": 80, "completion_tokens": 4}})
    assert usage_from(plain).cached_tokens is None
