"""SimClients: demo traffic shaped like the apps that use an Ollama cluster, sent to one gateway URL.

Two kinds of users, both stateful the way a prompt cache cares about:
  chats   multi-turn conversations: one of a few system prompts (1,000-4,000 characters), 3-8 turns, each
          turn the whole conversation so far (the previous answer as the assistant message) plus a new user
          message; then a new conversation.
  agents  coding-agent sessions in groups: every session of a group starts with the group's ~20,000-character
          system prompt plus its own suffix (working directory, task), then several calls, each the session
          so far plus a tool result; then a new session in the same group.
Requests stream, most through /api/chat, some through /v1/chat/completions (chosen per conversation).
Arrivals are random (exponential gaps, mean 1/rate s), each given to an idle user; a user whose answer is
still coming is not sent another, so at most chats + agent sessions requests are in flight.

It runs in its own thread with its own asyncio loop; start() and stop() are idempotent and return within a
few seconds. Errors are counted (``errors``, ``last_error``), never raised.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import urlsplit

import aiohttp
import orjson

from .metadata import is_embedding_model, norm

_WORDS = ("cache", "slot", "token", "prompt", "model", "layer", "vector", "request", "stream", "answer", "queue",
          "host", "router", "latency", "batch", "kernel", "buffer", "thread", "socket", "packet", "schema",
          "record", "index", "shard", "replica", "commit", "branch", "module", "function", "variable", "test",
          "failure", "retry", "timeout", "budget", "metric", "window", "signal", "config", "deploy", "the", "a",
          "of", "to", "and", "with", "for", "when", "every", "only", "after", "before", "always", "never", "fast",
          "slow", "small", "large", "stable", "careful", "exact", "plain", "clear", "short")
_LOOPBACK = {"127.0.0.1", "localhost", "0.0.0.0", "::", "::1"}
_WINDOW_S = 10.0  # describe()'s rate is measured over this window


def _text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    n = 0
    while n < chars:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14))).capitalize() + ". "
        out.append(sentence)
        n += len(sentence)
    return "".join(out)[:chars]


@dataclass
class ClientRecord:
    """One answered (or failed) request, for tests and the curious."""

    kind: str  # "chat" or "agent"
    user: int  # which chat / agent session slot sent it
    turn: int  # 1 for the first request of a conversation or session
    api: str  # "/api/chat" or "/v1/chat/completions"
    model: str
    ok: bool
    prompt_eval_count: Optional[int] = None  # from /api/chat's last line
    prompt_eval_duration: Optional[int] = None
    load_duration: Optional[int] = None


@dataclass
class _User:
    kind: str
    index: int
    group: int = 0
    busy: bool = False
    model: str = ""
    api: str = "/api/chat"
    messages: list = field(default_factory=list)
    turns_left: int = 0
    turn: int = 0


class SimClients:
    """Demo traffic to ``gateway_url`` (127.0.0.1 only) for the given models (embedding models are left out).

    ``describe()`` is e.g. "on: 6 chats, 3 agent groups, 2.9 req/s" (requests sent over the last 10 s), or
    "off"; errors are appended when there were any.
    """

    def __init__(self, gateway_url: str, models: list[str], *, rate: float = 3.0, seed: int = 0, chats: int = 6,
                 agent_groups: int = 3, sessions_per_group: int = 2, timeout: float = 60.0) -> None:
        parts = urlsplit(gateway_url if "//" in gateway_url else f"http://{gateway_url}")
        if parts.hostname not in _LOOPBACK or parts.port is None:
            raise ValueError(f"SimClients sends only to 127.0.0.1, not {gateway_url!r}")
        self.base = f"http://127.0.0.1:{parts.port}"
        chat_models = [norm(m) for m in models if not is_embedding_model(norm(m))]
        if not chat_models:
            raise ValueError("SimClients needs at least one chat model")
        self.models = chat_models
        self.rate = max(0.01, float(rate))
        self.seed = seed
        self.chats = max(0, chats)
        self.agent_groups = max(0, agent_groups)
        self.sessions_per_group = max(1, sessions_per_group)
        self.timeout = timeout
        self.sent = 0
        self.completed = 0
        self.errors = 0
        self.last_error = ""
        self.records: deque[ClientRecord] = deque(maxlen=2000)
        self._sends: deque[float] = deque()
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        rng = random.Random(seed)
        self._chat_prompts = [_text(rng, rng.randint(1000, 4000)) for _ in range(4)]
        self._group_prompts = [_text(rng, 20_000) for _ in range(self.agent_groups)]

    # -- control (any thread) --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="sollol-sim-clients", daemon=True)
        self._thread.start()
        ready.wait(5.0)

    def stop(self, timeout: float = 5.0) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        thread.join(timeout)
        if not thread.is_alive():
            self._thread = None

    def describe(self) -> str:
        if not self.running:
            return "off"
        now = time.monotonic()
        with self._lock:
            while self._sends and self._sends[0] < now - _WINDOW_S:
                self._sends.popleft()
            recent = len(self._sends)
            errors = self.errors
        out = f"on: {self.chats} chats, {self.agent_groups} agent groups, {recent / _WINDOW_S:.1f} req/s"
        return out + (f", {errors} error{'s' if errors != 1 else ''}" if errors else "")

    # -- the loop thread -------------------------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        try:
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._stop = asyncio.Event()
            ready.set()
            try:
                loop.run_until_complete(self._main(self._stop))
            except Exception as exc:  # counted, never raised
                with self._lock:
                    self.errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            self._loop = None
            ready.set()
            loop.close()

    def _users(self, rng: random.Random) -> list[_User]:
        users = [_User("chat", i) for i in range(self.chats)]
        users += [_User("agent", g * self.sessions_per_group + s, group=g)
                  for g in range(self.agent_groups) for s in range(self.sessions_per_group)]
        for user in users:
            self._new_conversation(user, rng)
        return users

    def _new_conversation(self, user: _User, rng: random.Random) -> None:
        user.turn = 0
        user.api = "/v1/chat/completions" if rng.random() < 0.25 else "/api/chat"
        if user.kind == "chat":
            user.model = rng.choice(self.models)
            user.turns_left = rng.randint(3, 8)
            system = rng.choice(self._chat_prompts)
        else:
            user.model = self.models[user.group % len(self.models)]  # a group shares its prompt on one model
            user.turns_left = rng.randint(4, 10)
            suffix = (f"\n\nSession {rng.randrange(10**6):06d}. Working directory /src/project-{user.index}. "
                      f"Task: {_text(rng, rng.randint(400, 1200))}")
            system = self._group_prompts[user.group] + suffix
        user.messages = [{"role": "system", "content": system}]

    def _next_user_message(self, user: _User, rng: random.Random) -> str:
        if user.kind == "chat":
            return _text(rng, rng.randint(60, 300)).rstrip() + "?"
        return "Tool result:\n" + _text(rng, rng.randint(200, 800))

    async def _main(self, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed + 1)
        users = self._users(rng)
        tasks: set[asyncio.Task] = set()
        connector = aiohttp.TCPConnector(limit=len(users) + 2)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:  # trust_env=False
            try:
                while not stop.is_set():
                    try:
                        await asyncio.wait_for(stop.wait(), rng.expovariate(self.rate))
                        break
                    except asyncio.TimeoutError:
                        pass
                    idle = [u for u in users if not u.busy]
                    if not idle:
                        continue
                    user = rng.choice(idle)
                    user.busy = True
                    user.messages.append({"role": "user", "content": self._next_user_message(user, rng)})
                    task = asyncio.get_running_loop().create_task(self._turn(session, user, rng))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            finally:
                for task in list(tasks):
                    task.cancel()
                if tasks:
                    await asyncio.wait(tasks, timeout=2.0)

    async def _turn(self, session: aiohttp.ClientSession, user: _User, rng: random.Random) -> None:
        user.turn += 1
        record = ClientRecord(user.kind, user.index, user.turn, user.api, user.model, ok=False)
        with self._lock:
            self.sent += 1
            self._sends.append(time.monotonic())
        try:
            answer = await self._send(session, user, record)
            user.messages.append({"role": "assistant", "content": answer})
            record.ok = True
            with self._lock:
                self.completed += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # counted, never raised: the demo goes on
            user.messages.pop()  # the question that got no answer
            with self._lock:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            self.records.append(record)
            user.turns_left -= 1
            if user.turns_left <= 0:
                self._new_conversation(user, rng)
            user.busy = False

    async def _send(self, session: aiohttp.ClientSession, user: _User, record: ClientRecord) -> str:
        body = {"model": user.model, "messages": user.messages, "stream": True}
        async with session.post(self.base + user.api, json=body) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:200]}")
            parts: list[str] = []
            if user.api == "/api/chat":
                async for line in resp.content:
                    if not line.strip():
                        continue
                    data = orjson.loads(line)
                    if "error" in data:
                        raise RuntimeError(str(data["error"]))
                    parts.append(data.get("message", {}).get("content", ""))
                    if data.get("done"):
                        record.prompt_eval_count = data.get("prompt_eval_count")
                        record.prompt_eval_duration = data.get("prompt_eval_duration")
                        record.load_duration = data.get("load_duration")
            else:
                async for line in resp.content:
                    if not line.startswith(b"data: "):
                        continue
                    payload = line[6:].strip()
                    if payload == b"[DONE]":
                        break
                    data = orjson.loads(payload)
                    if "error" in data:
                        raise RuntimeError(str(data["error"]))
                    for choice in data.get("choices", ()):
                        parts.append((choice.get("delta") or {}).get("content") or "")
            return "".join(parts)
