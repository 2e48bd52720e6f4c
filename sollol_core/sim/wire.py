"""What every endpoint shares: content types, the error type and the three error shapes (Ollama, OpenAI,
Anthropic), the timing figures an answer reports, and token estimates."""

from __future__ import annotations

import re
from typing import Any, Iterable, Literal, NamedTuple, Optional

import orjson
from aiohttp import web

JSON = {"Content-Type": "application/json; charset=utf-8"}
NDJSON = {"Content-Type": "application/x-ndjson"}
SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
NL = orjson.OPT_APPEND_NEWLINE

Family = Literal["ollama", "openai", "anthropic"]

# Ollama's texts, verbatim: the gateway tells these apart
BUSY_QUEUE = "server busy, please try again.  maximum pending requests exceeded"
NO_SLOTS = "no slots available"
NO_MEMORY = "model requires more system memory (9.8 GiB) than is available (3.1 GiB)"
RUNNER_GONE = ("model runner has unexpectedly stopped, this may be due to resource limitations or an "
               "internal error, check ollama server logs for details")


class SimError(Exception):
    """An answer with an error status, written in the shape of the endpoint's API family."""

    def __init__(self, status: int, message: str, etype: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.etype = etype


class Abort(Exception):
    """Drop the connection without finishing the answer."""


_OPENAI_TYPES = {400: "invalid_request_error", 404: "not_found_error", 503: "server_error"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 404: "not_found_error", 429: "rate_limit_error",
                    503: "overloaded_error"}


def error_body(family: Family, status: int, message: str, etype: Optional[str] = None) -> dict:
    if family == "openai":
        return {"error": {"message": message, "type": etype or _OPENAI_TYPES.get(status, "api_error"),
                          "param": None, "code": None}}
    if family == "anthropic":
        return {"type": "error", "error": {"type": etype or _ANTHROPIC_TYPES.get(status, "api_error"),
                                           "message": message}}
    return {"error": message}


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, headers=JSON)


def sse(event: Optional[str], obj: Any) -> bytes:
    """One server-sent event: ``event: <name>`` (when named) and ``data: <json>``."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


def words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def token_estimate(texts: Iterable[str]) -> int:
    """About four characters a token, each text rounded up; at least 1 (Ollama never reports 0)."""
    return max(1, sum(-(-len(t) // 4) for t in texts if t))


def is_zero_keep_alive(value: Any) -> bool:
    return value in (0, "0") or (isinstance(value, str) and re.fullmatch(r"0+(\.0*)?[smh]?", value) is not None)


class Stats(NamedTuple):
    """Timing figures of one answer, in nanoseconds, as Ollama reports them."""

    total_ns: int
    load_ns: int  # > 0 only when this request waited for the model to load
    prompt_n: int  # the whole prompt, cached part included
    prompt_ns: int  # prefill of the part that was not in the slot's cache
    eval_n: int
    eval_ns: int
    reason: str  # "stop" or "length"
    cached_n: Optional[int] = None  # of prompt_n, tokens found in the slot's cache; None: not reported

    def ollama(self) -> dict:
        out = {
            "done_reason": self.reason,
            "done": True,
            "total_duration": self.total_ns,
            "load_duration": self.load_ns,
            "prompt_eval_count": self.prompt_n,
            "prompt_eval_duration": self.prompt_ns,
            "eval_count": self.eval_n,
            "eval_duration": self.eval_ns,
        }
        if self.cached_n is not None:
            out["prompt_eval_cached_count"] = self.cached_n
        return out

    def usage(self) -> dict:
        """OpenAI chat/completions usage (the cached part in prompt_tokens_details, when reported)."""
        out: dict = {"prompt_tokens": self.prompt_n, "completion_tokens": self.eval_n,
                     "total_tokens": self.prompt_n + self.eval_n}
        if self.cached_n is not None:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_n}
        return out
