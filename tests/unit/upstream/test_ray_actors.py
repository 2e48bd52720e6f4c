"""The Ray executor on a real local Ray (started once for this module): requests and streams through
actors, an actor killed mid-run, a bad cluster address, and no Ray process left after shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from sollol_core.sim import SimNodeSpec

from helpers import CHAT_MODEL, USER, wait_until

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_gateway(module_sim_cluster, module_gateway):
    sim = module_sim_cluster(SimNodeSpec(name="a", latency_ms=5, tokens=6, tokens_per_s=200),
                            SimNodeSpec(name="b", latency_ms=5, tokens=6, tokens_per_s=200, seed=1))
    sollol = module_gateway(sim.addresses, executor="ray", ray_workers=2, ray_num_cpus=1)
    assert sollol.ray.wait_ready(120), sollol.ray.error
    return sim, sollol


def test_stats_report_the_ray_executor(ray_gateway):
    _, sollol = ray_gateway
    stats = httpx.get(sollol.gateway_url + "/api/stats", trust_env=False).json()
    executor = stats["executor"]
    assert executor["kind"] == "ray" and executor["state"] == "ready"
    assert executor["actors"] == 2 and executor["error"] is None
    assert re.fullmatch(r"127\.0\.0\.1:\d+", executor["address"])
    assert stats["components"]["ray"]["state"] == "ready"


def test_requests_and_streams_run_on_actors(ray_gateway):
    _, sollol = ray_gateway
    import ray

    before = sollol.executor.calls_on_ray
    actor_calls_before = sum(s["calls"] for s in ray.get([a.stats.remote() for a in sollol.ray.actors]))
    with httpx.Client(base_url=sollol.gateway_url, timeout=20, trust_env=False) as c:
        r = c.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False})
        assert r.status_code == 200
        assert re.match(r"\[(a|b)\] tok0 tok1 tok2 tok3 tok4 tok5$", r.json()["message"]["content"])
        with c.stream("POST", "/api/chat", json={"model": CHAT_MODEL, "messages": USER}) as s:
            assert s.status_code == 200 and s.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in s.iter_lines() if line]
        assert len(lines) == 7 and lines[-1]["done"] is True and lines[-1]["eval_count"] == 6
        assert "".join(x["message"]["content"] for x in lines[:-1]).endswith("tok5")
        r = c.post("/api/embed", json={"model": "nomic-embed-text", "input": ["x", "y"]})
        assert r.status_code == 200 and len(r.json()["embeddings"]) == 2
    assert sollol.executor.calls_on_ray - before == 3
    actor_calls = sum(s["calls"] for s in ray.get([a.stats.remote() for a in sollol.ray.actors]))
    assert actor_calls - actor_calls_before == 3  # the actors made the upstream calls
    pids = {s["pid"] for s in ray.get([a.stats.remote() for a in sollol.ray.actors])}
    assert os.getpid() not in pids


def test_a_multipart_body_and_an_anthropic_stream_run_on_actors(ray_gateway):
    sim, sollol = ray_gateway
    with httpx.Client(base_url=sollol.gateway_url, timeout=20, trust_env=False) as c:
        assert c.post("/api/pull", json={"model": "whisper", "stream": False}).status_code == 200  # in the loop
        before = sollol.executor.calls_on_ray
        audio = bytes(range(256)) * 8
        r = c.post("/v1/audio/transcriptions", files={"file": ("clip.wav", audio)}, data={"model": "whisper"})
        assert r.status_code == 200 and f"{len(audio)} bytes of audio" in r.json()["text"]  # parsed as multipart
        with c.stream("POST", "/v1/messages", json={"model": CHAT_MODEL, "max_tokens": 10, "stream": True,
                                                    "messages": USER}) as s:
            frames = [f for f in s.read().decode().split("\n\n") if f.strip()]
        assert frames[0].startswith("event: message_start") and frames[-1].startswith("event: message_stop")
    assert sollol.executor.calls_on_ray - before == 2
    sent = [body for node in sim.nodes for path, body in node.received if path == "/v1/audio/transcriptions"]
    assert sent == [{"model": "whisper", "file": {"filename": "clip.wav", "size": len(audio)}}]


def test_killed_actor_is_replaced_and_its_request_retried(ray_gateway):
    sim, sollol = ray_gateway
    import ray

    for node in sim.nodes:
        node.spec.latency_ms = 1500  # long enough to kill the actors while the call is out
    result = {}

    def send():
        with httpx.Client(base_url=sollol.gateway_url, timeout=30, trust_env=False) as c:
            result["r"] = c.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False})

    try:
        old = list(sollol.ray.actors)
        replaced_before = sollol.ray.replaced
        t = threading.Thread(target=send)
        t.start()
        wait_until(lambda: sum(n.in_flight for n in sim.nodes) == 1, what="the call to reach a node")
        for actor in old:
            ray.kill(actor, no_restart=True)
        t.join(30)
    finally:
        for node in sim.nodes:
            node.spec.latency_ms = 5
    r = result["r"]
    assert r.status_code == 200 and r.json()["done"] is True  # retried, the client saw no error
    assert sollol.ray.replaced - replaced_before >= 1
    assert len(sollol.ray.actors) == 2
    assert sum(a is b for a in old for b in sollol.ray.actors) < 2  # at least one new actor
    # the hosts were not blamed for the actor's death
    assert all(h.state.value == "healthy" for h in sollol.registry.hosts())
    # and the pool works again
    assert len(ray.get([a.stats.remote() for a in sollol.ray.actors], timeout=60)) == 2
    with httpx.Client(base_url=sollol.gateway_url, timeout=20, trust_env=False) as c:
        for _ in range(4):
            assert c.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False}).status_code == 200


class _Cli:
    """`sollol --no-ui` as a subprocess: started by the context manager, which returns once the gateway
    listens and, at the end, kills it if it still runs and closes its stderr pipe (read on by a thread)."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.args = args
        self.env = env
        self._drain: threading.Thread | None = None

    def __enter__(self) -> tuple[subprocess.Popen, str]:
        proc = self.proc = subprocess.Popen(
            [sys.executable, "-m", "sollol_tui.cli", "--no-ui", "--port", "0", "--metrics-port", "0",
             "--no-adaptive-metrics", *self.args], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=self.env or os.environ.copy())
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            m = re.search(r"gateway on (http://\S+)", line)
            if m:
                self._drain = threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True)
                self._drain.start()
                return proc, m.group(1)
        self.__exit__()
        pytest.fail("sollol did not start")

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        if self._drain is not None:
            self._drain.join(15)  # EOF once the process and the Ray processes it started are gone
            if self._drain.is_alive():
                return  # a Ray process still holds the pipe: closing it now would block on the reader
        assert proc.stderr is not None
        proc.stderr.close()


def test_unreachable_ray_cluster_leaves_the_gateway_serving(module_sim_cluster):
    sim = module_sim_cluster(SimNodeSpec(name="c", latency_ms=1))
    import socket

    s = socket.socket()  # a port nothing listens on
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()
    env = os.environ | {"SOLLOL_RAY_ADDRESS": f"127.0.0.1:{closed_port}"}
    with _Cli("--executor", "ray", "--hosts", sim.addresses[0], env=env) as (proc, url):
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
            r = c.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False})
            assert r.status_code == 200  # served at once, on the in-loop executor
            executor = wait_until(lambda: (e := c.get("/api/stats").json()["executor"])["state"] == "failed" and e,
                                  timeout=30, what="ray to report its failure")
            assert f"127.0.0.1:{closed_port}" in executor["error"] and "ray start --head" in executor["error"]
            assert c.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False}).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_sigterm_leaves_no_ray_process(module_sim_cluster):
    sim = module_sim_cluster(SimNodeSpec(name="d", latency_ms=1))
    with _Cli("--executor", "ray", "--workers", "1", "--hosts", sim.addresses[0]) as (proc, url):
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
            wait_until(lambda: c.get("/api/stats").json()["executor"]["state"] == "ready", timeout=120,
                       interval=0.5, what="ray to start")
            assert c.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False}).status_code == 200
        marker = f"sollol-ray-{proc.pid}-"
        ray_procs = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
        assert ray_procs, "the Ray processes should be findable by their private temp dir"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    gone, alive = psutil.wait_procs(ray_procs, timeout=15)
    assert not alive, [p.info["cmdline"][:2] for p in alive]
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]


def test_sigterm_while_ray_is_still_starting_leaves_nothing_behind(module_sim_cluster):
    sim = module_sim_cluster(SimNodeSpec(name="e", latency_ms=1))
    with _Cli("--executor", "ray", "--workers", "1", "--hosts", sim.addresses[0]) as (proc, url):
        marker = f"sollol-ray-{proc.pid}-"
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as c:
            assert c.get("/api/stats").json()["executor"]["state"] == "starting"
            assert c.post("/api/chat", json={"model": CHAT_MODEL, "messages": USER, "stream": False}).status_code == 200
        # let Ray's processes appear, then stop before it is ready
        wait_until(lambda: [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])],
                   timeout=30, interval=0.1, what="Ray's first processes")
        ray_procs = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
    gone, alive = psutil.wait_procs(ray_procs, timeout=15)
    assert not alive
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
