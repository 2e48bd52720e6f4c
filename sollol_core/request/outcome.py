"""Outcome: what an upstream answer means for the request, the host and the model.

Read as DESIGN.md ("What an Ollama host answers under load") says Ollama answers:

    2xx                              pass on
    404 "model ... not found"        the host's model list was stale: try a host that has it
    other 4xx                        the client's problem: pass on, no retry, the host is not blamed
    503 "server busy", 500 "no slots available"
                                     busy is not broken: back to the queue, the host is not blamed
    500 cannot load the model (out of memory, unable to load)
                                     that (host, model) is unfit for a while: try elsewhere; host stays healthy
    other 5xx                        the host failed: taken out, try elsewhere
    refused / reset / timed out before the headers
                                     the host failed: taken out, try elsewhere (executors raise UpstreamFailure)
    our executor failed (a Ray actor died)
                                     try elsewhere; nobody is blamed

and, once a stream is under way (its first byte reached the client, so nothing can be retried):

    the host broke off               the host failed: taken out; the stream ends with an error frame
    an {"error": ...} line in a 200  the host's failure in its stats; it stays in rotation
    the client went away             nobody's fault; what the host's slot holds is not known any more

`classify` and `classify_failure` only judge; Books.apply turns a verdict into its side effects, for live
requests and batch chunks alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import orjson

from ..errors import ExecutorFailure, UpstreamFailure


class Verdict(StrEnum):
    PASS = "pass"  # hand the answer to the client
    CLIENT_ERROR = "client_error"  # a 4xx: pass on, no retry, nobody's fault but the request's
    MODEL_MISSING = "model_missing"  # the host does not have the model: try another
    BUSY = "busy"  # the host is full: requeue, do not blame it
    UNFIT = "unfit"  # the host cannot load this model: try another, the host stays healthy
    HOST_FAILED = "host_failed"  # take the host out, try another
    EXECUTOR_FAILED = "executor_failed"  # our own executor failed: try another, nobody is blamed
    BROKE_MID_STREAM = "broke_mid_stream"  # the host broke off after the first byte: taken out
    ERROR_IN_STREAM = "error_in_stream"  # an error line inside a 200 stream: counted, stays in rotation
    CLIENT_GONE = "client_gone"  # the client left before the answer was complete
    PASSED_ON = "passed_on"  # an error answer of a call pinned to one host, handed on as it is
    PREEMPTED = "preempted"  # a batch request gave its slot to a waiting high one before its answer began


RETRY_ELSEWHERE = frozenset((Verdict.MODEL_MISSING, Verdict.UNFIT, Verdict.HOST_FAILED, Verdict.EXECUTOR_FAILED))


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    reason: str  # for the log and the request record
    status: int = 0  # the host's HTTP status; 0 when it gave none

    @property
    def retry_elsewhere(self) -> bool:
        return self.verdict in RETRY_ELSEWHERE


SERVED = Outcome(Verdict.PASS, "", 200)


_BUSY_TEXT = ("server busy", "maximum pending requests", "no slots available")
_UNFIT_TEXT = ("unable to load", "out of memory", "requires more system memory", "failed to load model",
               "not enough memory", "insufficient memory", "cudamalloc failed", "model is too large")


def error_text(body: bytes) -> str:
    """The `error` of an Ollama/OpenAI/Anthropic error body, else the body's start."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode(errors="replace").strip()
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, str):
            return err
        if isinstance(err, dict):
            message = err.get("message")
            if isinstance(message, str):
                return message
    return body[:300].decode(errors="replace").strip()


def classify(status: int, body: bytes) -> Outcome:
    """The verdict on an answer whose status is known and whose body has been read (error answers are small)."""
    if status < 400:
        return Outcome(Verdict.PASS, "", status)
    text = error_text(body)
    lower = text.lower()
    if status == 404 and "not found" in lower:
        return Outcome(Verdict.MODEL_MISSING, text, status)
    if status == 503 or (status == 500 and "no slots available" in lower) or \
            (status >= 500 and any(t in lower for t in _BUSY_TEXT)):
        return Outcome(Verdict.BUSY, text or f"HTTP {status}", status)
    if status >= 500 and any(t in lower for t in _UNFIT_TEXT):
        return Outcome(Verdict.UNFIT, text, status)
    if status >= 500:
        return Outcome(Verdict.HOST_FAILED, f"HTTP {status} {text[:200]}".strip(), status)
    return Outcome(Verdict.CLIENT_ERROR, text, status)


def classify_failure(error: UpstreamFailure) -> Outcome:
    """The verdict on a call that got no answer: the host's fault, unless our executor failed."""
    if isinstance(error, ExecutorFailure):
        return Outcome(Verdict.EXECUTOR_FAILED, str(error))
    return Outcome(Verdict.HOST_FAILED, str(error))


def stream_error(line: bytes) -> str | None:
    """The error of an `{"error": ...}` line (or SSE data frame) inside a 200 stream, else None."""
    line = line.strip()
    if line.startswith(b"data:"):
        line = line[5:].strip()
    if not line.startswith(b"{") or b'"error"' not in line:
        return None
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, dict) and data.get("error") and set(data) <= {"error", "type"}:
        err = data["error"]
        return err if isinstance(err, str) else str(err.get("message", err)) if isinstance(err, dict) else str(err)
    return None
