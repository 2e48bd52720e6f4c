"""One rendering of a conversation for every API, so a slot's cache means the same whichever API filled it.

A request becomes a list of turns (role, text) and then one string::

    <|system|>\\n{text}<|end|>\\n<|user|>\\n{text}<|end|>\\n ... <|assistant|>\\n

ending with the assistant header, as a chat template leaves the prompt for the model to continue. After
an answer, a slot holds ``prompt + answer``; the next turn of that conversation (the answer sent back as an
assistant message, then a new user message) renders to a string that starts with exactly that, so it
reuses all of it. Tool calls render inside the assistant turn as ``<|tool_call|>{"arguments":..,"name":..}``
(keys sorted, ids left out, because each API names calls differently); tool results are ``tool`` turns.

What maps onto turns:
  /api/chat, /v1/chat/completions   messages (content string or text parts; images as [image])
  /api/generate, /v1/completions    system (when given) + the prompt as a user turn; raw=true: the prompt as is
  /v1/messages                      system (string or text blocks), messages with text, tool_use and
                                    tool_result blocks
  /v1/responses                     instructions, then input (a string, or message / function_call /
                                    function_call_output items)
So /api/chat, /v1/chat/completions and /api/generate with the same system and user text hit the same cache.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple, Optional

import orjson

from .wire import SimError, token_estimate

TOOL_CALL = "<|tool_call|>"
IMAGE = "[image]"


class Turn(NamedTuple):
    role: str
    text: str


class Prompt(NamedTuple):
    """A rendered prompt and its size in tokens (estimated from the turns' texts, not the markup)."""

    text: str
    tokens: int


def render(turns: Iterable[Turn]) -> Prompt:
    parts: list[str] = []
    texts: list[str] = []
    for turn in turns:
        parts.append(f"<|{turn.role}|>\n{turn.text}<|end|>\n")
        texts.append(turn.text)
    parts.append("<|assistant|>\n")
    return Prompt("".join(parts), token_estimate(texts))


def raw(text: str) -> Prompt:
    return Prompt(text, token_estimate([text]))


def tool_call_text(name: Any, arguments: Any) -> str:
    """A tool call as the assistant's text; string arguments (OpenAI's JSON text) are parsed first."""
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError:
            pass
    return TOOL_CALL + orjson.dumps({"name": name, "arguments": arguments}, option=orjson.OPT_SORT_KEYS).decode()


def _parts_text(content: Any) -> str:
    """Text of a content value: a string, or a list of parts (text / input_text / output_text; images)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                kind = part.get("type")
                if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
                    out.append(part["text"])
                elif kind in ("image_url", "input_image", "image"):
                    out.append(IMAGE)
        return "".join(out)
    raise SimError(400, "invalid message content")


def _calls_text(calls: Any) -> str:
    """Ollama's and OpenAI's tool_calls: [{"function": {"name", "arguments"}}]."""
    if not isinstance(calls, list):
        return ""
    out = []
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            out.append(tool_call_text(fn.get("name"), fn.get("arguments", {})))
    return "".join(out)


def chat_turns(messages: list) -> list[Turn]:
    """Ollama /api/chat and OpenAI /v1/chat/completions messages."""
    turns = []
    for m in messages:
        if not isinstance(m, dict):
            raise SimError(400, "invalid message format")
        role = m.get("role")
        if not isinstance(role, str):
            role = "user"
        if role == "developer":  # OpenAI's newer name for the system role
            role = "system"
        text = _parts_text(m.get("content"))
        images = m.get("images")
        if isinstance(images, list):
            text += IMAGE * len(images)
        turns.append(Turn(role, text + _calls_text(m.get("tool_calls"))))
    return turns


def generate_turns(system: Any, prompt: Any) -> list[Turn]:
    """/api/generate and /v1/completions: the system text (when given) and the prompt as a user turn."""
    turns = [Turn("system", system)] if isinstance(system, str) and system else []
    if isinstance(prompt, list):  # /v1/completions accepts a list of strings
        prompt = "".join(p for p in prompt if isinstance(p, str))
    turns.append(Turn("user", prompt if isinstance(prompt, str) else ""))
    return turns


def anthropic_turns(system: Any, messages: list) -> list[Turn]:
    """/v1/messages: system string or text blocks; text, image, tool_use and tool_result blocks."""
    turns = []
    if isinstance(system, list):
        system = "\n".join(b.get("text", "") for b in system if isinstance(b, dict) and b.get("type") == "text")
    if isinstance(system, str) and system:
        turns.append(Turn("system", system))
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise SimError(400, "messages: each message needs a role of user or assistant")
        content = m.get("content")
        if isinstance(content, str):
            turns.append(Turn(m["role"], content))
            continue
        if not isinstance(content, list):
            raise SimError(400, "messages: content must be a string or a list of content blocks")
        text: list[str] = []
        for block in content:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                text.append(str(block.get("text", "")))
            elif kind == "image":
                text.append(IMAGE)
            elif kind == "tool_use":
                text.append(tool_call_text(block.get("name"), block.get("input", {})))
            elif kind == "tool_result":
                if text:
                    turns.append(Turn(m["role"], "".join(text)))
                    text = []
                turns.append(Turn("tool", _parts_text(block.get("content"))))
        if text or not any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            turns.append(Turn(m["role"], "".join(text)))
    return turns


def responses_turns(instructions: Any, items: Any) -> list[Turn]:
    """/v1/responses: instructions as the system turn; input as a string or a list of items."""
    turns = [Turn("system", instructions)] if isinstance(instructions, str) and instructions else []
    if isinstance(items, str):
        turns.append(Turn("user", items))
        return turns
    if not isinstance(items, list):
        raise SimError(400, "input must be a string or a list of input items")
    for item in items:
        if not isinstance(item, dict):
            raise SimError(400, "invalid input item")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role", "user")
            turns.append(Turn("system" if role == "developer" else str(role), _parts_text(item.get("content"))))
        elif kind == "function_call":
            turns.append(Turn("assistant", tool_call_text(item.get("name"), item.get("arguments", "{}"))))
        elif kind == "function_call_output":
            output = item.get("output")
            turns.append(Turn("tool", output if isinstance(output, str) else _parts_text(output)))
        elif kind == "reasoning":
            continue
        else:
            raise SimError(400, f"unsupported input item type: {kind}")
    return turns


def last_is_tool_result(turns: list[Turn]) -> bool:
    return bool(turns) and turns[-1].role == "tool"


def tool_arguments(schema: Any, hint: str) -> dict:
    """Arguments for a tool the simulated model "calls": every required property of its JSON schema, filled
    by type (strings from the start of the last user text), so the answer validates against the schema."""
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties")
    if not isinstance(props, dict):
        props = {}
    required = schema.get("required")
    if not isinstance(required, list):
        required = []
    defaults: dict[Any, object] = {"string": hint[:40] or "sim", "integer": 1, "number": 1.0, "boolean": True, "array": [],
                "object": {}}
    out = {}
    for name in required:
        prop = props.get(name)
        if not isinstance(prop, dict):
            prop = {}
        enum = prop.get("enum")
        out[name] = enum[0] if isinstance(enum, list) and enum else defaults.get(prop.get("type"), hint[:40])
    return out


def last_user_text(turns: list[Turn]) -> str:
    for turn in reversed(turns):
        if turn.role == "user":
            return turn.text
    return ""


def pick_tool(tools: Any, choice: Any) -> Optional[dict]:
    """The tool the simulated model calls: the one tool_choice names, else the first; None when tools are
    absent or tool_choice says none."""
    if not isinstance(tools, list) or not tools:
        return None
    if choice == "none" or (isinstance(choice, dict) and choice.get("type") == "none"):
        return None
    named = choice.get("name") if isinstance(choice, dict) else None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        named = choice["function"].get("name")
    for tool in tools:
        if isinstance(tool, dict) and named and (tool.get("name") == named
                                                 or (tool.get("function") or {}).get("name") == named):
            return tool
    return tools[0] if isinstance(tools[0], dict) else None


def split_pieces(text: str, n: int) -> tuple[str, ...]:
    """text in about n nearly equal pieces (at least one character each): a tool call's JSON, streamed."""
    n = max(1, min(n, len(text)))
    size = -(-len(text) // n) if text else 1
    return tuple(text[i:i + size] for i in range(0, len(text), size)) or ("",)
