"""relay on its own: bytes as they come, the host's error lines, a break after the first byte ended with the
API's error frame, and the answer followed for the cache shadow."""

from __future__ import annotations

import json
from typing import AsyncIterator

import pytest

from sollol_core.errors import UpstreamFailure
from sollol_core.request.call import Call
from sollol_core.request.relay import TAIL_BYTES, StreamState, relay
from sollol_core.request.shapes import ANTHROPIC, OLLAMA, OPENAI
from sollol_core.request.usage import AnswerText, usage_from


def call(api: str = OLLAMA, sse: bool = False) -> Call:
    return Call(endpoint="/api/chat", method="POST", path="/api/chat", body=b"{}", model="m", stream=True,
                timeout=5, sse=sse, api=api)  # type: ignore[arg-type]


async def source(chunks: list[bytes], fail: bool = False) -> AsyncIterator[bytes]:
    for c in chunks:
        yield c
    if fail:
        raise UpstreamFailure("connection closed before the answer was complete")


async def run(c: Call, chunks: list[bytes], fail: bool = False, follow: bool = False) -> tuple[bytes, StreamState]:
    it = source(chunks, fail).__aiter__()
    first = await it.__anext__()
    state = StreamState(tail=first, answer=AnswerText() if follow else None)
    out = b"".join([piece async for piece in relay(c, "h:1", it, first, state)])
    return out, state


def line(content: str, done: bool = False, **extra: object) -> bytes:
    return json.dumps({"message": {"role": "assistant", "content": content}, "done": done, **extra}).encode() + b"\n"


async def test_chunks_pass_byte_for_byte_and_the_usage_is_read_from_the_end():
    chunks = [line("Hel"), line("lo"), line("", True, eval_count=2, eval_duration=20_000_000,
                                            prompt_eval_count=9, prompt_eval_duration=5_000_000)]
    out, state = await run(call(), chunks, follow=True)
    assert out == b"".join(chunks) and state.complete and state.error is None and state.host_error is None
    usage = usage_from(state.tail)
    assert (usage.eval_count, usage.prompt_eval_count) == (2, 9) and usage.eval_s == pytest.approx(0.02)
    assert state.answer is not None and state.answer.text == "Hello"


async def test_the_tail_is_bounded_and_holds_a_final_line_split_across_reads():
    final = line("", True, eval_count=7)
    chunks = [line("x" * 5000), line("y" * 5000), final[:10], final[10:]]
    _, state = await run(call(), chunks)
    assert len(state.tail) <= TAIL_BYTES and usage_from(state.tail).eval_count == 7


async def test_an_error_line_from_the_host_is_passed_on_and_noted():
    chunks = [line("partial"), b'{"error":"an error was encountered while running the model"}\n']
    out, state = await run(call(), chunks)
    assert out.endswith(chunks[1]) and state.complete
    assert state.host_error == "an error was encountered while running the model"


@pytest.mark.parametrize("api, sse, check", [
    (OLLAMA, False, lambda frame: json.loads(frame)["error"]),
    (OPENAI, True, lambda frame: json.loads(frame.removeprefix(b"data: "))["error"]["message"]),
    (ANTHROPIC, True, lambda frame: json.loads(frame.split(b"data: ", 1)[1])["error"]["message"]),
])
async def test_a_break_after_the_first_byte_ends_with_the_apis_error_frame(api, sse, check):
    first = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n' if sse else line("hi")
    out, state = await run(call(api, sse), [first], fail=True)
    assert out.startswith(first) and not state.complete and state.status == 502
    assert state.broke == "connection closed before the answer was complete"
    frame = out[len(first):].strip()
    assert "failed mid-stream" in check(frame)


async def test_an_answer_too_long_to_follow_is_dropped_not_truncated():
    from sollol_core.request.usage import ANSWER_MAX_CHARS

    big = [line("z" * 10000) for _ in range(ANSWER_MAX_CHARS // 10000 + 2)]
    _, state = await run(call(), big, follow=True)
    assert state.answer is not None and state.answer.text is None
