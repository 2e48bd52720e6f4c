"""Usage: what an answer reports about itself — token counts and, on native Ollama answers, the timings
(prompt_eval_*, load_duration) the cache shadow learns from, and total_duration, whose part beyond the work
is the time the request waited inside the host for a slot (the slot learning reads it) — and the assistant
text of a chat answer, which the shadow follows so that a slot holds prompt plus answer as the host's does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import orjson

from ..prompt_cache.feedback import Feedback


@dataclass
class Usage:
    """What an answer reports about its own cost (None: not reported)."""

    eval_count: Optional[int] = None
    eval_s: Optional[float] = None
    prompt_eval_count: Optional[int] = None
    prompt_eval_s: Optional[float] = None
    load_s: Optional[float] = None
    wait_s: Optional[float] = None  # total - load - prompt eval - eval: the wait for a slot inside the host
    work_s: Optional[float] = None  # prompt eval + eval
    prompt_tokens: Optional[int] = None  # /v1 answers: the whole prompt, cached part included
    cached_tokens: Optional[int] = None  # of the prompt, tokens the host says it took from its cache

    def feedback(self, ttft_s: Optional[float] = None, reloaded: Optional[bool] = None) -> Feedback:
        """What this answer tells the cache shadow about the host's slot (`reloaded`: judged by the runner
        table against the host's warm load time; None: not judged)."""
        return Feedback(prompt_eval_count=self.prompt_eval_count, prompt_eval_duration_s=self.prompt_eval_s,
                        load_duration_s=self.load_s, ttft_s=ttft_s, reloaded=reloaded,
                        cached_tokens=self.cached_tokens, prompt_tokens=self.prompt_tokens)


_NUMBERS = (int, float)


def _seconds(ns: Any) -> Optional[float]:
    # exact types: a bool is not a duration (and orjson gives only int and float)
    return ns / 1e9 if type(ns) in _NUMBERS and ns >= 0 else None


def _count(value: Any) -> Optional[int]:
    return value if type(value) is int else None


def frame(line: bytes) -> Optional[dict[str, Any]]:
    """The JSON object of one NDJSON line or SSE `data:` line; None for anything else."""
    line = line.strip()
    if line.startswith(b"data:"):
        line = line[5:].strip()
    if not line.startswith(b"{"):
        return None
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def usage_from(payload: bytes) -> Usage:
    """Usage from an answer, or the last frames of a stream (Ollama NDJSON, OpenAI / Anthropic SSE)."""
    for line in reversed(payload.rstrip().split(b"\n")[-12:]):
        data = frame(line)
        if data is None:
            continue
        if "eval_count" in data or "prompt_eval_count" in data:
            eval_s = _seconds(data.get("eval_duration"))
            prompt_s = _seconds(data.get("prompt_eval_duration"))
            load_s = _seconds(data.get("load_duration"))
            total_s = _seconds(data.get("total_duration"))
            wait_s = work_s = None
            if total_s is not None and load_s is not None and prompt_s is not None and eval_s is not None:
                work_s = prompt_s + eval_s
                wait_s = max(0.0, total_s - load_s - work_s)
            return Usage(eval_count=_count(data.get("eval_count")), eval_s=eval_s if eval_s else None,
                         prompt_eval_count=_count(data.get("prompt_eval_count")), prompt_eval_s=prompt_s,
                         load_s=load_s, wait_s=wait_s, work_s=work_s,
                         cached_tokens=_count(data.get("prompt_eval_cached_count")))
        usage = data.get("usage")
        if not isinstance(usage, dict) and isinstance(data.get("response"), dict):
            usage = data["response"].get("usage")  # OpenAI Responses: response.completed
        if isinstance(usage, dict):
            out = _count(usage.get("completion_tokens"))
            if out is None:
                out = _count(usage.get("output_tokens"))  # Anthropic, Responses
            if out is not None:
                prompt, cached = _prompt_usage(usage)
                return Usage(eval_count=out, prompt_tokens=prompt, cached_tokens=cached)
    return Usage()


def _prompt_usage(usage: dict[str, Any]) -> tuple[Optional[int], Optional[int]]:
    """(whole prompt tokens, cached tokens) of a /v1 usage object; None where it does not say."""
    if "cache_read_input_tokens" in usage:  # Anthropic: input_tokens counts only what was not read from cache
        cached = _count(usage.get("cache_read_input_tokens"))
        parts = [_count(usage.get(k)) for k in ("input_tokens", "cache_read_input_tokens",
                                                 "cache_creation_input_tokens")]
        return (sum(n for n in parts if n is not None) if parts[0] is not None else None), cached
    prompt = _count(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    if prompt is None:
        prompt = _count(usage.get("input_tokens"))  # Responses
        details = usage.get("input_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else None
    return prompt, cached


ANSWER_MAX_CHARS = 65536  # longer answers are not followed (the prompt's own blocks still are)
CHAT_ENDPOINTS = ("/api/chat", "/v1/chat/completions", "/v1/messages", "/v1/responses")


def _delta(data: dict[str, Any]) -> Optional[str]:
    """The text one frame of a streamed chat answer adds (Ollama, OpenAI, Anthropic, Responses)."""
    msg = data.get("message")
    if isinstance(msg, dict):
        text = msg.get("content")
        return text if isinstance(text, str) else None
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        part = choices[0].get("delta") or choices[0].get("message")
        text = part.get("content") if isinstance(part, dict) else None
        return text if isinstance(text, str) else None
    kind = data.get("type")
    if kind == "content_block_delta" and isinstance(data.get("delta"), dict):
        text = data["delta"].get("text")
        return text if isinstance(text, str) else None
    if kind == "response.output_text.delta":
        text = data.get("delta")
        return text if isinstance(text, str) else None
    return None


def answer_of(body: bytes) -> Optional[str]:
    """The assistant text of a whole (non-streamed) chat answer in any of the four shapes."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    text = _delta(data)
    if text is not None:
        return text
    content = data.get("content")  # Anthropic
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    output = data.get("output")  # Responses
    if isinstance(output, list):
        return "".join(part.get("text", "") for item in output if isinstance(item, dict)
                       for part in item.get("content") or () if isinstance(part, dict)
                       and part.get("type") == "output_text")
    return None


class AnswerText:
    """Collects the assistant text of a streamed chat answer (bounded), so the cache shadow can hold the
    prompt plus the answer, as the host's slot does, and the next turn matches all of it."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self._rest = b""
        self.overflow = False

    def feed(self, chunk: bytes) -> None:
        if self.overflow:
            return
        data = self._rest + chunk
        lines = data.split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            obj = frame(line)
            text = _delta(obj) if obj is not None else None
            if text:
                self.parts.append(text)
                self.size += len(text)
                if self.size > ANSWER_MAX_CHARS:
                    self.overflow = True
                    return

    @property
    def text(self) -> Optional[str]:
        return None if self.overflow or not self.parts else "".join(self.parts)
