"""Runner options: what runner a request asks the host for (Call.runner), and the operator's rewrite.

Ollama runs a request on a runner loaded with the request's runner options (num_ctx, num_batch, num_gpu ...;
prompt_cache.runner) and reloads the model when they differ from the loaded runner's. The native endpoints
carry them in `options`; the OpenAI and Anthropic endpoints carry none, so they run on the model's defaults.

With `[models."<name>"] num_ctx = N` (and the other runner options: config.ModelSettings) the gateway sets
those options in every native request for that model, in the body sent upstream and in the parsed body the
canonical prompt is made from, so all clients share one runner on each host; what it changed goes to the
request log (Call.note). A request already asking for the configured values is left byte for byte.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import orjson

from ..config import ModelSettings, model_name
from ..prompt_cache.runner import DEFAULTS, runner_key
from .call import Call

#: The endpoints whose bodies carry Ollama's `options`.
NATIVE = frozenset(("/api/chat", "/api/generate", "/api/embed", "/api/embeddings"))


def prepare(call: Call, models: Mapping[str, ModelSettings]) -> None:
    """Set `call.runner`; apply the configured runner options of its model (rewriting body and data), and
    say what changed in `call.note`."""
    data = call.data
    if data is None or not call.model:
        return
    if call.path not in NATIVE:
        call.runner = DEFAULTS
        return
    options = data.get("options")
    settings = models.get(model_name(call.model)) if models else None
    wanted = settings.options() if settings is not None else None
    if wanted:
        changed = _changes(options, wanted)
        if changed and isinstance(call.body, bytes):
            merged = dict(options) if isinstance(options, dict) else {}
            merged.update(wanted)
            data = {**data, "options": merged}
            call.data = data
            call.body = orjson.dumps(data)
            options = merged
            call.note = f"{', '.join(changed)} (config models.{model_name(call.model)})"
    call.runner = runner_key(options)


def _changes(options: Any, wanted: Mapping[str, Any]) -> list[str]:
    """'num_ctx 2048 → 4096' for each configured option the request does not already ask for."""
    given: Mapping[str, Any] = options if isinstance(options, dict) else {}
    out = []
    for name, value in wanted.items():
        old: Optional[Any] = given.get(name)
        if old != value or type(old) is not type(value):
            out.append(f"{name} {'default' if old is None else old} → {value}")
    return out
