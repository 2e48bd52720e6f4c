"""Shared pieces of the benchmarks: simulated nodes and the gateway in their own processes, and a
closed-loop load generator. Everything listens on and sends to 127.0.0.1 only; every load is bounded
in count and in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, Optional

import aiohttp
import psutil

from sollol_core.sim import SimNodeSpec

PY = sys.executable


@contextmanager
def sim_process(specs: list[SimNodeSpec]) -> Iterator[list[str]]:
    """Simulated nodes in a separate process (so they do not share a core or the GIL with the gateway)."""
    args = [PY, "-m", "sollol_core.sim"]
    for spec in specs:
        args += ["--spec", json.dumps(asdict(spec))]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    addresses = []
    try:
        while len(addresses) < len(specs):
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("simulated nodes did not start")
            if line.startswith("SIM "):
                addresses.append(line.split()[2])
        yield addresses
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Gateway:
    url: str
    proc: subprocess.Popen
    started_s: float  # seconds from process start to the first answered /api/health

    def rss_mb(self) -> float:
        p = psutil.Process(self.proc.pid)
        procs = [p] + p.children(recursive=True)
        total = 0
        for q in procs:
            try:
                total += q.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20


@contextmanager
def gateway_process(hosts: list[str], *extra: str, env: Optional[dict] = None,
                    root: Optional[str] = None) -> Iterator[Gateway]:
    """`sollol --no-ui` in its own process, as an operator runs it. `root`: the source tree whose gateway
    runs (put first on PYTHONPATH, e.g. a git worktree of an older commit); None: whatever `import
    sollol_core` finds from /tmp with this environment."""
    import urllib.request

    args = [PY, "-m", "sollol_tui.cli", "--no-ui", "--hosts", ",".join(hosts), "--port", "0",
            "--metrics-port", "0", *extra]
    env = dict(env or os.environ)
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [env.get("PYTHONPATH", "")] if p])
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env, cwd="/tmp")
    url = None
    said: list[str] = []
    try:
        deadline = time.time() + 60
        while url is None and time.time() < deadline:
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError("gateway exited before it listened:\n" + "".join(said[-20:]))
            said.append(line)
            m = re.search(r"gateway on (http://\S+)", line)
            if m:
                url = m.group(1)
        if url is None:
            raise RuntimeError("gateway did not start in 60 s")
        while True:
            try:
                urllib.request.urlopen(url + "/api/health", timeout=1).read()
                break
            except Exception:
                time.sleep(0.005)
        started = time.perf_counter() - t0
        # keep draining stderr so the gateway never blocks on a full pipe
        import threading

        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        yield Gateway(url, proc, started)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def floor_process(hosts: list[str]) -> Iterator[Gateway]:
    """bench/floor_gateway.py in its own process: the own server and pool with no stages between them."""
    import threading

    t0 = time.perf_counter()
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "floor_gateway.py")
    proc = subprocess.Popen([PY, script, ",".join(hosts)], stderr=subprocess.PIPE, text=True, cwd="/tmp")
    try:
        said = proc.stderr.readline()
        m = re.search(r"gateway on (http://\S+)", said)
        if m is None:
            raise RuntimeError("floor gateway did not start: " + said + proc.stderr.read())
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        yield Gateway(m.group(1), proc, time.perf_counter() - t0)
    finally:
        proc.kill()
        proc.wait(10)


@dataclass
class LoadResult:
    latencies_ms: list[float]
    errors: int
    seconds: float

    @property
    def count(self) -> int:
        return len(self.latencies_ms) + self.errors

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(round(q / 100 * (len(data) - 1))))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


async def closed_loop(url: str, body: dict, concurrency: int, count: Optional[int] = None,
                      duration_s: Optional[float] = None, max_duration_s: float = 120.0,
                      headers: Optional[dict] = None) -> LoadResult:
    """`concurrency` clients, each sending its next request when the last one is answered.
    Stops after `count` requests or `duration_s` seconds, whichever is set (hard limit max_duration_s).
    `headers` go with every request (an API key)."""
    assert url.startswith("http://127.0.0.1"), "load goes to this machine only"
    payload = json.dumps(body).encode()
    latencies: list[float] = []
    errors = 0
    sent = 0
    t0 = time.perf_counter()
    limit = duration_s if duration_s is not None else max_duration_s
    sent_headers = {"Content-Type": "application/json", **(headers or {})}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client() -> None:
            nonlocal errors, sent
            while time.perf_counter() - t0 < min(limit, max_duration_s):
                if count is not None and sent >= count:
                    return
                sent += 1
                s = time.perf_counter()
                try:
                    async with session.post(url, data=payload, headers=sent_headers,
                                            timeout=aiohttp.ClientTimeout(total=60)) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - s) * 1000)
                else:
                    errors += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return LoadResult(latencies, errors, time.perf_counter() - t0)


def run(coro):
    return asyncio.run(coro)


# open-loop load -------------------------------------------------------------------------------------------
def poisson_times(rate_per_s: float, duration_s: Optional[float], seed: int,
                  count: Optional[int] = None) -> list[float]:
    """Arrival offsets (seconds from the start) of a Poisson process, exponential gaps, seeded: those before
    duration_s, at most `count` of them (one of the two must be given)."""
    import random

    assert duration_s is not None or count is not None
    rng = random.Random(seed)
    out: list[float] = []
    t = 0.0
    while count is None or len(out) < count:
        t += rng.expovariate(rate_per_s)
        if duration_s is not None and t >= duration_s:
            break
        out.append(t)
    return out


@dataclass
class Answer:
    """One request as its client saw it."""

    status: int  # HTTP status; 0 = no answer (refused, reset, timed out)
    latency_ms: float  # to the end of the answer
    ttft_ms: Optional[float] = None  # streamed: to the first chunk
    retry_after: Optional[str] = None
    text: str = ""  # streamed or whole: the answer's content (chat message / generate response)
    final: Optional[dict] = None  # the last JSON object (Ollama's stats: prompt_eval_duration ...)
    error: str = ""
    tag: str = ""  # the caller's label (client name, scenario)
    start: float = 0.0  # time.perf_counter() when it was sent

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and not self.error

    @property
    def clean_reject(self) -> bool:
        """A refusal a client can act on: 503 or 429 with Retry-After."""
        return self.status in (429, 503) and self.retry_after is not None


async def send(session: aiohttp.ClientSession, url: str, body: dict, headers: Optional[dict] = None,
               timeout_s: float = 120.0, tag: str = "") -> Answer:
    """POST one Ollama request; streamed (body["stream"] true) answers are read line by line, the first line
    timing the first token. Never raises for a failed request: the Answer says what happened."""
    assert url.startswith("http://127.0.0.1"), "load goes to this machine only"
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    payload = json.dumps(body).encode()
    s = time.perf_counter()
    ttft = None
    try:
        async with session.post(url, data=payload, headers=h, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
            retry_after = r.headers.get("Retry-After")
            if r.status >= 300 or not body.get("stream"):
                raw = await r.read()
                lat = (time.perf_counter() - s) * 1000
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = None
                text = ""
                err = ""
                if isinstance(data, dict):
                    text = (data.get("message") or {}).get("content", "") or data.get("response", "") or ""
                    if r.status >= 300:
                        e = data.get("error")
                        err = e if isinstance(e, str) else json.dumps(e)
                return Answer(r.status, lat, None, retry_after, text, data if isinstance(data, dict) else None,
                              err, tag, s)
            parts: list[str] = []
            final = None
            err = ""
            while True:
                line = await r.content.readline()
                if not line:
                    break
                if ttft is None:
                    ttft = (time.perf_counter() - s) * 1000
                line = line.strip()
                if not line:
                    continue
                obj = json.loads(line)
                if "error" in obj:
                    err = str(obj["error"])
                parts.append((obj.get("message") or {}).get("content", "") or obj.get("response", "") or "")
                if obj.get("done"):
                    final = obj
            return Answer(r.status, (time.perf_counter() - s) * 1000, ttft, retry_after, "".join(parts), final,
                          err or ("" if final is not None else "stream ended without done"), tag, s)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
        return Answer(0, (time.perf_counter() - s) * 1000, ttft, None, "", None, f"{type(e).__name__}: {e}", tag, s)


async def open_loop(schedule: list[tuple[float, "object"]], fire, limit_s: float = 180.0) -> list:
    """Start fire(item) at each (offset seconds, item) of the schedule, without waiting for earlier ones
    (open loop); returns what each returned, in schedule order. Bounded: whatever is still running
    limit_s after the start is cancelled (and returned as None)."""
    t0 = time.perf_counter()
    loop = asyncio.get_running_loop()
    tasks = []
    for offset, item in schedule:
        delay = t0 + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(fire(item)))
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, t0 + limit_s - time.perf_counter())) if tasks \
        else (set(), set())
    for t in pending:
        t.cancel()
    return [t.result() if t in done and not t.cancelled() and t.exception() is None else None for t in tasks]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), nan when empty."""
    if not values:
        return float("nan")
    data = sorted(values)
    return data[min(len(data) - 1, max(0, int(round(q / 100 * (len(data) - 1)))))]


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def toml_config(path: str, **sections: dict) -> str:
    """Write a sollol.toml (top-level keys in sections[""], tables under their names); returns the path."""
    import tomli_w

    data = dict(sections.pop("", {}))
    data.update(sections)
    with open(path, "wb") as f:
        tomli_w.dump(data, f)
    return path


def http_json(method: str, url: str, body: Optional[dict] = None, timeout: float = 60) -> dict:
    import urllib.request

    assert url.startswith("http://127.0.0.1"), "load goes to this machine only"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


# real Ollama ----------------------------------------------------------------------------------------------
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def real_ollama_tool() -> tuple[str, str]:
    """(the real-ollama script, its install folder): REAL_OLLAMA / REAL_OLLAMA_DIR, else the shared tool
    and /tmp/sollol-real-ollama."""
    tool = os.environ.get("REAL_OLLAMA") or os.path.join(os.path.dirname(REPO), "shared", "real-ollama",
                                                          "real-ollama")
    folder = os.environ.get("REAL_OLLAMA_DIR", "/tmp/sollol-real-ollama")
    return tool, folder


def real_ollama_available() -> bool:
    tool, folder = real_ollama_tool()
    return os.path.isfile(tool) and os.path.isfile(os.path.join(folder, ".installed"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def real_ollama(ports: list[int], env: Optional[dict] = None) -> Iterator[list[str]]:
    """Real Ollama servers on these ports (started fresh, stopped at the end); `env` passes through
    (OLLAMA_NUM_PARALLEL, OLLAMA_MULTIUSER_CACHE ...)."""
    tool, folder = real_ollama_tool()
    e = dict(os.environ)
    e.update(env or {})
    started = []
    try:
        for port in ports:
            subprocess.run([tool, "start", folder, str(port)], check=True, capture_output=True, timeout=120,
                           stdin=subprocess.DEVNULL, env=e)
            started.append(port)
        yield [f"127.0.0.1:{p}" for p in ports]
    finally:
        for port in started:
            subprocess.run([tool, "stop", folder, str(port)], capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL)


# older source trees, for side-by-side runs ----------------------------------------------------------------
def worktree(commit: str, folder: Optional[str] = None) -> str:
    """A git worktree of `commit` (made once under /tmp, reused while it is at that commit); its path."""
    want = subprocess.run(["git", "-C", REPO, "rev-parse", commit], capture_output=True, text=True,
                          check=True).stdout.strip()
    folder = folder or f"/tmp/sollol-tree-{want[:10]}"
    if os.path.isdir(os.path.join(folder, "sollol_core")):
        head = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True)
        if head.stdout.strip() == want:
            return folder
        raise SystemExit(f"{folder} exists but is not a worktree of {commit}: remove it")
    subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", folder, want], check=True,
                   capture_output=True)
    return folder


def config_source(root: str) -> str:
    """The text of a source tree's config module (sollol_core/config.py, or the config package's settings)."""
    for rel in (("sollol_core", "config.py"), ("sollol_core", "config", "settings.py")):
        path = os.path.join(root, *rel)
        if os.path.exists(path):
            return open(path).read()
    return ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far."""
    p = psutil.Process(pid)
    total = 0.0
    for q in [p] + p.children(recursive=True):
        try:
            t = q.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total
