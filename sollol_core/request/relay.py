"""Relay: a streamed answer, byte for byte as it arrives, and what its last frames say.

After the first byte reached the client a failure cannot be retried: the stream ends with an error frame in
the API's own shape (shapes.stream_error_frame). An `{"error": ...}` line the host itself sends inside a
200 stream is passed on and counted as that host's failure. The end of the stream is kept (bounded) to read
its usage: token counts and, on native Ollama answers, prompt_eval_* and load_duration (cache feedback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Optional

from ..errors import UpstreamFailure
from .call import Call
from .outcome import stream_error
from .shapes import stream_error_frame
from .usage import AnswerText

TAIL_BYTES = 8192


@dataclass
class StreamState:
    tail: bytes  # the end of the answer so far (for the final frames' usage)
    complete: bool = False
    error: Optional[str] = None  # a failure after the first byte (ours: the host broke off)
    broke: Optional[str] = None  # how the host broke off, when it did
    status: int = 200
    host_error: Optional[str] = None  # an error line the host sent inside its 200 stream
    answer: Optional[AnswerText] = None  # the answer's text, followed for the cache shadow


def relay(call: Call, host: str, chunks: AsyncIterator[bytes], first: bytes, state: StreamState
          ) -> AsyncIterator[bytes]:
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
            state.broke = str(e)
            state.status = 502
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
