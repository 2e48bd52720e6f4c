"""Relay: a streamed answer, byte for byte as it arrives, and what its last frames say.

After the first byte reached the client a failure cannot be retried: the stream ends with an error frame in
the API's own shape (api_errors.stream_error_frame). An `{"error": ...}` line the host itself sends inside a
200 stream is passed on and counted as that host's failure. The end of the stream is kept (bounded) to read
its usage: token counts and, on native Ollama answers, prompt_eval_* and load_duration (cache feedback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

import orjson
from starlette.responses import Response, StreamingResponse

from ..errors import UpstreamFailure
from ..http.errors import stream_error_frame
from .call import Call
from .outcome import stream_error

TAIL_BYTES = 8192


@dataclass
class Usage:
    """What an answer reports about its own cost (None: not reported)."""

    eval_count: Optional[int] = None
    eval_s: Optional[float] = None
    prompt_eval_count: Optional[int] = None
    prompt_eval_s: Optional[float] = None
    load_s: Optional[float] = None


def _seconds(ns: Any) -> Optional[float]:
    return ns / 1e9 if isinstance(ns, (int, float)) and not isinstance(ns, bool) and ns >= 0 else None


def _count(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def frame(line: bytes) -> Optional[dict]:
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
            return Usage(eval_count=_count(data.get("eval_count")), eval_s=eval_s if eval_s else None,
                         prompt_eval_count=_count(data.get("prompt_eval_count")),
                         prompt_eval_s=_seconds(data.get("prompt_eval_duration")),
                         load_s=_seconds(data.get("load_duration")))
        usage = data.get("usage")
        if not isinstance(usage, dict) and isinstance(data.get("response"), dict):
            usage = data["response"].get("usage")  # OpenAI Responses: response.completed
        if isinstance(usage, dict):
            out = _count(usage.get("completion_tokens"))
            if out is None:
                out = _count(usage.get("output_tokens"))  # Anthropic, Responses
            if out is not None:
                return Usage(eval_count=out)
    return Usage()


ANSWER_MAX_CHARS = 65536  # longer answers are not followed (the prompt's own blocks still are)
CHAT_ENDPOINTS = ("/api/chat", "/v1/chat/completions", "/v1/messages", "/v1/responses")


def _delta(data: dict) -> Optional[str]:
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
            data = frame(line)
            text = _delta(data) if data is not None else None
            if text:
                self.parts.append(text)
                self.size += len(text)
                if self.size > ANSWER_MAX_CHARS:
                    self.overflow = True
                    return

    @property
    def text(self) -> Optional[str]:
        return None if self.overflow or not self.parts else "".join(self.parts)


@dataclass
class StreamState:
    tail: bytes  # the end of the answer so far (for the final frames' usage)
    complete: bool = False
    error: Optional[str] = None  # a failure after the first byte (ours: the host broke off)
    status: int = 200
    host_error: Optional[str] = None  # an error line the host sent inside its 200 stream
    answer: Optional[AnswerText] = None  # the answer's text, followed for the cache shadow


def relay(call: Call, host: str, chunks: AsyncIterator[bytes], first: bytes, state: StreamState,
          on_break: Callable[[str, UpstreamFailure], None]) -> AsyncIterator[bytes]:
    """Chunks as they arrive; a failure after the first byte ends the stream with an error frame."""

    async def gen() -> AsyncIterator[bytes]:
        try:
            answer = state.answer
            if first:
                _look_for_error(first, state)
                if answer is not None:
                    answer.feed(first)
                yield first
            while True:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                state.tail = (state.tail + chunk)[-TAIL_BYTES:]  # the final line may be split across reads
                if state.host_error is None:
                    _look_for_error(chunk, state)
                if answer is not None:
                    answer.feed(chunk)
                yield chunk
            state.complete = True
        except UpstreamFailure as e:
            state.error = f"upstream host {host} failed mid-stream: {e}"
            state.status = 502
            on_break(host, e)
            sep = b"" if state.tail.endswith(b"\n") else b"\n"
            yield sep + stream_error_frame(call.api, call.sse, state.error)

    return gen()


def _look_for_error(chunk: bytes, state: StreamState) -> None:
    if b'"error"' not in chunk:
        return
    for line in chunk.split(b"\n"):
        err = stream_error(line)
        if err is not None:
            state.host_error = err
            return


class RelayResponse(StreamingResponse):
    """A streamed answer whose bookkeeping runs however it ends.

    When a client goes away before the first chunk was sent, Starlette never starts the body generator,
    so a `finally` inside it would never run (leaking the upstream connection and the in-flight count).
    """

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]],
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


class BookedResponse(Response):
    """A whole answer whose bookkeeping (books, the cache shadow, the slot) runs once its bytes were handed
    to the connection, however the sending ends: the client does not wait for the gateway's notes."""

    def __init__(self, content: bytes, after: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._after = after

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._after()
