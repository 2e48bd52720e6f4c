"""Outcome: Ollama's answers read as DESIGN.md says (busy is not broken; cannot load is about one model)."""

import orjson
import pytest

from sollol_core.request.outcome import Verdict, classify, error_text, stream_error


def body(text):
    return orjson.dumps({"error": text})


@pytest.mark.parametrize("status, text, verdict", [
    (200, "", Verdict.PASS),
    (503, "server busy, please try again.  maximum pending requests exceeded", Verdict.BUSY),
    (500, "no slots available", Verdict.BUSY),
    (500, "model requires more system memory (9.8 GiB) than is available (3.1 GiB)", Verdict.UNFIT),
    (500, "unable to load model: /models/blobs/sha256-abc", Verdict.UNFIT),
    (500, "llama runner process has terminated: signal: killed", Verdict.HOST_FAILED),
    (502, "bad gateway", Verdict.HOST_FAILED),
    (404, "model 'nope' not found", Verdict.MODEL_MISSING),
    (400, "invalid input type", Verdict.CLIENT_ERROR),
    (499, "canceled", Verdict.CLIENT_ERROR),
])
def test_classify(status, text, verdict):
    assert classify(status, body(text) if text else b"").verdict == verdict


def test_error_text_in_every_shape():
    assert error_text(body("x")) == "x"
    assert error_text(orjson.dumps({"error": {"message": "y", "type": "t"}})) == "y"
    assert error_text(b"<html>oops</html>") == "<html>oops</html>"


def test_stream_error_lines():
    assert stream_error(b'{"error":"an error was encountered while running the model"}') == \
        "an error was encountered while running the model"
    assert stream_error(b'data: {"error": {"message": "boom", "type": "api_error"}}') == "boom"
    assert stream_error(b'{"model":"m","message":{"content":"the word \\"error\\""},"done":false}') is None
    assert stream_error(b"not json") is None
