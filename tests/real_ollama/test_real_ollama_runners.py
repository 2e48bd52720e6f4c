"""Learned slots and runner identity on two real Ollama servers, one with OLLAMA_NUM_PARALLEL=1 and one with 2
(the real-ollama tool passes the environment through); nothing about their slots is configured in SOLLOL.

  slots    SOLLOL learns 1 and 2 from the answers' total_duration, each server behind a gateway of its own
  runners  clients alternating num_ctx 2048 and 4096 on one model: after the warm-up no reload (each num_ctx
           finds its host); with [models."gemma3-270m"] num_ctx = 4096, one runner for all

Skips like tests/real_ollama/test_real_ollama.py when the tool or the install is absent.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from helpers.real_ollama import _free_port, _tool, _unavailable

pytestmark = [pytest.mark.real_ollama, pytest.mark.timeout(180)]

MODEL = "gemma3-270m"
KEY = "gemma3-270m:latest"


def _start(tool: Path, folder: Path, parallel: int) -> int:
    port = _free_port()
    env = dict(os.environ, OLLAMA_NUM_PARALLEL=str(parallel))
    r = subprocess.run([str(tool), "start", str(folder), str(port)], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, env=env)
    if r.returncode != 0:
        pytest.fail(f"real-ollama start {folder} {port} failed: {r.stderr.strip()}")
    return port


@pytest.fixture(scope="module")
def servers():
    """(the address with one slot, the address with two)."""
    tool = _tool()
    folder = Path(os.environ.get("REAL_OLLAMA_DIR", "/tmp/ro"))
    if not (tool.is_file() and os.access(tool, os.X_OK)):
        _unavailable(f"the real-ollama tool is not at {tool}")
    if not (folder / ".installed").is_file():
        _unavailable(f"real Ollama is not installed in {folder} (run: {tool} install {folder})")
    started: list[int] = []
    try:
        for parallel in (1, 2):
            started.append(_start(tool, folder, parallel))
        yield tuple(f"127.0.0.1:{p}" for p in started)
    finally:
        for port in started:
            subprocess.run([str(tool), "stop", str(folder), str(port)], capture_output=True, timeout=30,
                           stdin=subprocess.DEVNULL)


def chat(http: httpx.Client, num_ctx: int | None = None, words: int = 6) -> dict:
    options: dict = {"num_predict": words, "temperature": 0, "seed": 1}
    if num_ctx is not None:
        options["num_ctx"] = num_ctx
    r = http.post("/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}],
                                     "stream": False, "options": options})
    assert r.status_code == 200, r.text
    return r.json()


def traffic(url: str, clients: int, until, limit_s: float, num_ctx=lambda i, k: None) -> list[dict]:
    """`clients` closed-loop clients until `until()` holds (checked between requests) or limit_s passed;
    client i's k-th request asks for num_ctx(i, k). The answers."""
    answers: list[dict] = []
    deadline = time.monotonic() + limit_s
    done = threading.Event()

    failed: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with httpx.Client(base_url=url, timeout=90, trust_env=False) as http:
                k = 0
                while not done.is_set() and time.monotonic() < deadline:
                    answers.append(chat(http, num_ctx(i, k)))
                    k += 1
                    if until(answers):
                        done.set()
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            failed.append(e)
            done.set()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise failed[0]
    return answers


def learned(sollol) -> dict[str, int | None]:
    return {v.host: next((r.slots for r in v.slot_learning if r.applies), None) for v in sollol.views.host_views()}


def reloads(sollol) -> dict[str, int]:
    return {v.host: sum(r.reloads for r in v.runners) for v in sollol.views.host_views()}


def test_slots_are_learned_from_the_answers_of_one_and_two_slot_servers(servers, gateway):
    """Each server behind a gateway of its own, with two clients more than its slots: every request goes to
    it, so it is busy beyond its slots from the first round. (Behind one gateway, placement may rightly hold
    the extra requests for the one-slot server when it is the faster, and the two-slot one then seldom runs
    more than one at once: on a loaded machine it once showed two waits in 100 s, and learned nothing.)"""
    for host, slots in zip(servers, (1, 2)):
        sollol = gateway([host], chat_timeout=90, connect_timeout=5)
        t0 = time.monotonic()
        met: dict = {}

        def right(answers: list[dict]) -> bool:
            """Learned right, and bounding admission, at this moment (read here: on this loaded machine a
            host whose health check times out counts as restarted afterwards and learns again)."""
            if len(answers) >= 6 and learned(sollol) == {host: slots}:
                met.setdefault("took", time.monotonic() - t0)
                met.setdefault("limit", sollol.slots.limit(host, MODEL))
                return True
            return False

        traffic(sollol.gateway_url, slots + 2, right, limit_s=75)
        views = "\n".join(repr(v.slot_learning) for v in sollol.views.host_views())
        assert "took" in met, f"{slots}-slot server learned nothing right in 75 s: {views}"
        # what was learned bounds admission: the server then takes that many of SOLLOL's requests at a time
        assert met["limit"] == slots, views
        sollol.stop()


def test_each_num_ctx_finds_its_host_and_the_config_makes_one_runner(servers, gateway):
    sollol = gateway(list(servers), chat_timeout=90, connect_timeout=5)
    alternate = lambda i, k: 2048 if i % 2 == 0 else 4096  # noqa: E731 - two clients on each
    # warm-up: each num_ctx loads a runner somewhere (a reload or two)
    traffic(sollol.gateway_url, 4, lambda answers: len(answers) >= 6, limit_s=60, num_ctx=alternate)
    warm = reloads(sollol)
    answers = traffic(sollol.gateway_url, 4, lambda answers: len(answers) >= 10, limit_s=60, num_ctx=alternate)
    assert reloads(sollol) == warm, ([v.runners for v in sollol.views.host_views()],
                                     [(r.host, r.placement) for r in sollol.recent_requests()[-len(answers):]])
    assert max(a["load_duration"] for a in answers) < 0.5e9  # no answer shows a reload either
    loaded = sorted(r.options for v in sollol.views.host_views() for r in v.runners if r.model == KEY)
    assert loaded == ["num_ctx=2048", "num_ctx=4096"]

    sollol.control.update_config(models={MODEL: {"num_ctx": 4096}})
    answers = traffic(sollol.gateway_url, 4, lambda answers: len(answers) >= 8, limit_s=60, num_ctx=alternate)
    records = [r for r in sollol.recent_requests()[-len(answers):] if r.endpoint == "/api/chat"]
    runners = {v.host: next(r.options for r in v.runners if r.model == KEY) for v in sollol.views.host_views()}
    # one runner for all: every request ran on a num_ctx 4096 runner, whichever client sent it (a host left
    # with the old runner takes a request only where a reload costs less than waiting for a matching one)
    assert {runners[r.host] for r in records} == {"num_ctx=4096"}, (runners, [r.placement for r in records])
    assert sum(1 for a in answers if a["load_duration"] > 0.5e9) <= 1  # at most the one switch from 2048
    assert any("num_ctx 2048 → 4096 (config models.gemma3-270m:latest)" in r.placement for r in records)
