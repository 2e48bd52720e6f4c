"""Model management through the gateway over simulated nodes: copy and delete on every host that has the model,
create narrowed to the hosts with its base, merged pull/create progress (as the `ollama` client reads it),
blobs (HEAD on every host, uploads streamed to every host that lacks the blob), X-SOLLOL-Host narrowing, and
the operator token beyond loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading

import httpx
import ollama
import pytest
from aiohttp import web

from sollol_core.sim import SimNodeSpec
from sollol_core.upstream.fanout import BodyTee, ProgressMerger

from helpers import make_client, settled, wait_until

pytestmark = pytest.mark.timeout(90)

MODEL = "llama3.2"
EXTRA = "phi3"  # only on node a


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def two(sim_cluster, gateway):
    cluster = sim_cluster(SimNodeSpec(name="a", seed=0, latency_ms=1, tokens=2, models=[MODEL, EXTRA]),
                          SimNodeSpec(name="b", seed=1, latency_ms=1, tokens=2, models=[MODEL]))
    sollol = gateway(cluster.addresses)
    http = make_client(sollol)
    yield cluster, sollol, http
    http.close()


def paths(node) -> list[str]:
    return [p for p, _ in node.received]


# -- copy and delete ---------------------------------------------------------------------------------------------


def test_copy_acts_on_every_host_that_has_the_model(two):
    cluster, sollol, http = two
    a, b = cluster.addresses
    r = http.post("/api/copy", json={"source": EXTRA, "destination": "mine"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["status"] == "success"
    assert {h: v["outcome"] for h, v in data["hosts"].items()} == {a: "success", b: "absent"}
    assert data["hosts"][b]["status_code"] == 404
    assert "mine:latest" in cluster.nodes[0].models and "mine:latest" not in cluster.nodes[1].models
    # the gateway re-read the model lists: the copy is listed and served at once
    tags = {m["name"]: m["hosts"] for m in http.get("/api/tags").json()["models"]}
    assert tags["mine:latest"] == [a]
    assert sollol.registry.get(a).has_model("mine") and not sollol.registry.get(b).has_model("mine")

    r = http.post("/api/copy", json={"source": MODEL, "destination": "both"})
    assert r.status_code == 200 and all("both:latest" in n.models for n in cluster.nodes)
    r = http.post("/api/copy", json={"source": "no-such-model", "destination": "x"})
    assert r.status_code == 404 and r.json()["error"] == "model 'no-such-model' not found on any host"
    r = http.post("/api/copy", json={"source": MODEL})
    assert r.status_code == 400 and "destination" in r.json()["error"]


def test_delete_acts_on_every_host_that_has_the_model(two):
    cluster, sollol, http = two
    r = http.request("DELETE", "/api/delete", json={"model": MODEL})
    assert r.status_code == 200 and r.json()["status"] == "success"
    assert {v["outcome"] for v in r.json()["hosts"].values()} == {"success"}
    assert all("llama3.2:latest" not in n.models for n in cluster.nodes)
    r = http.post("/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404  # gone everywhere, and the gateway knows it

    r = http.request("DELETE", "/api/delete", json={"model": EXTRA})
    outcomes = {h: v["outcome"] for h, v in r.json()["hosts"].items()}
    assert r.status_code == 200 and outcomes == {cluster.addresses[0]: "success", cluster.addresses[1]: "absent"}
    r = http.request("DELETE", "/api/delete", json={"model": EXTRA})
    assert r.status_code == 404 and r.json()["error"] == "model 'phi3' not found on any host"


def test_x_sollol_host_narrows_to_one_host(two):
    cluster, _, http = two
    a, b = cluster.addresses
    r = http.request("DELETE", "/api/delete", json={"model": MODEL}, headers={"X-SOLLOL-Host": b})
    assert r.status_code == 200 and r.content == b""  # the host's own answer, passed on as it is
    assert "llama3.2:latest" in cluster.nodes[0].models and "llama3.2:latest" not in cluster.nodes[1].models
    r = http.post("/api/copy", json={"source": MODEL, "destination": "c"}, headers={"X-SOLLOL-Host": b})
    assert r.status_code == 404 and "not found" in r.json()["error"]  # b no longer has it
    assert "c:latest" not in cluster.nodes[0].models
    r = http.post("/api/pull", json={"model": "gemma3"}, headers={"X-SOLLOL-Host": a})
    assert ndjson(r.text)[-1] == {"status": "success"} and "gemma3:latest" not in cluster.nodes[1].models


def test_a_host_that_does_not_answer_fails_the_call_and_is_named(two):
    cluster, sollol, http = two
    b = cluster.addresses[1]
    cluster.kill(1)
    r = http.request("DELETE", "/api/delete", json={"model": MODEL})
    data = r.json()
    assert r.status_code == 502 and data["error"].startswith(f"/api/delete failed on {b}: cannot connect")
    assert data["hosts"][cluster.addresses[0]]["outcome"] == "success" and data["hosts"][b]["outcome"] == "failed"
    sollol.registry.mark_unhealthy(b, "down")  # once known unhealthy, it is skipped (and said so)
    r = http.post("/api/copy", json={"source": EXTRA, "destination": "d"})
    assert r.status_code == 200 and r.json()["hosts"][b] == {"status_code": None, "outcome": "skipped",
                                                             "result": "unhealthy (down)"}


# -- pull, push, create: merged progress ------------------------------------------------------------------------


def test_pull_streams_merged_progress_the_ollama_client_reads(two):
    cluster, sollol, http = two
    client = ollama.Client(host=sollol.gateway_url, timeout=20, trust_env=False)
    try:
        progress = list(client.pull("gemma3", stream=True))
    finally:
        client._client.close()
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert statuses.count("pulling manifest") == 1 and statuses.count("success") == 1  # once, not once per host
    layers = [p for p in progress if p.digest]
    size = layers[0].total  # the first host's report of the layer
    assert len(layers) == 2 and len({p.digest for p in layers}) == 1
    assert layers[-1].total == 2 * size and layers[-1].completed == 2 * size  # one bar: both hosts' bytes
    assert all("gemma3:latest" in n.models for n in cluster.nodes)
    sent = {"model": "gemma3", "insecure": False, "stream": True}
    assert [n.received for n in cluster.nodes] == [[("/api/pull", sent)]] * 2

    r = http.post("/api/pull", json={"model": "qwen2.5"})
    last = ndjson(r.text)[-1]
    assert r.headers["content-type"] == "application/x-ndjson"
    assert last == {"status": "success", "hosts": {a: "success" for a in cluster.addresses}}
    record = settled(sollol)[-1]
    assert record.endpoint == "/api/pull" and record.status == 200 and record.host == ",".join(cluster.addresses)


def test_pull_failing_on_one_host_ends_with_an_error_the_client_raises(two):
    cluster, sollol, _ = two
    b = cluster.addresses[1]
    cluster.kill(1)
    client = ollama.Client(host=sollol.gateway_url, timeout=20, trust_env=False)
    try:
        with pytest.raises(ollama.ResponseError) as exc:
            list(client.pull("gemma3", stream=True))
    finally:
        client._client.close()
    assert exc.value.error.startswith(f"/api/pull failed on {b}: cannot connect")
    assert f"succeeded on {cluster.addresses[0]}" in exc.value.error
    assert "gemma3:latest" in cluster.nodes[0].models


def test_push_goes_to_one_host_that_has_the_model(two):
    cluster, _, http = two
    r = http.post("/api/push", json={"model": EXTRA, "stream": False})
    assert r.status_code == 200 and r.json() == {"status": "success"}
    assert paths(cluster.nodes[0]) == ["/api/push"] and paths(cluster.nodes[1]) == []
    r = http.post("/api/push", json={"model": "no-such-model"})
    assert r.status_code == 404 and r.json() == {"error": "model 'no-such-model' not found on any host"}


def test_create_from_a_base_runs_on_the_hosts_that_have_it(two):
    cluster, _, http = two
    r = http.post("/api/create", json={"model": "mine", "from": EXTRA, "system": "be brief"})
    assert r.status_code == 200 and ndjson(r.text)[-1]["status"] == "success"
    assert "mine:latest" in cluster.nodes[0].models and "mine:latest" not in cluster.nodes[1].models
    assert paths(cluster.nodes[1]) == []
    r = http.post("/api/create", json={"model": "ours", "from": MODEL, "stream": False})
    assert r.status_code == 200 and set(r.json()["hosts"]) == set(cluster.addresses)
    r = http.post("/api/create", json={"model": "x", "from": "no-such-base", "stream": False})
    assert r.status_code == 404 and "failed on" in r.json()["error"]


# -- blobs and create with files -----------------------------------------------------------------------------------


def test_blob_upload_reaches_every_host_and_create_with_files(two):
    cluster, sollol, http = two
    data = b"GGUF" + os.urandom(3 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.head(f"/api/blobs/{digest}").status_code == 404
    chunks = (data[i:i + 65536] for i in range(0, len(data), 65536))  # chunked: no Content-Length
    r = http.post(f"/api/blobs/{digest}", content=chunks)
    assert r.status_code == 201, r.text
    assert r.json()["bytes"] == len(data)
    assert {v["outcome"] for v in r.json()["hosts"].values()} == {"uploaded"}
    assert all(n.blobs == {digest: len(data)} for n in cluster.nodes)
    assert http.head(f"/api/blobs/{digest}").status_code == 200

    progress = ndjson(http.post("/api/create", json={"model": "mine", "files": {"m.gguf": digest}}).text)
    assert [p["status"] for p in progress[:-1]] == ["parsing GGUF", f"using existing layer {digest}",
                                                     "writing manifest"]
    assert progress[-1]["status"] == "success" and all("mine:latest" in n.models for n in cluster.nodes)
    record = [r for r in settled(sollol) if r.endpoint == "/api/blobs/{digest}"][-1]
    assert record.status == 201


def test_blob_goes_only_to_the_hosts_that_lack_it(two):
    cluster, _, http = two
    a, b = cluster.addresses
    data = os.urandom(100_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.post(f"/api/blobs/{digest}", content=data, headers={"X-SOLLOL-Host": a}).status_code == 201
    assert digest in cluster.nodes[0].blobs and digest not in cluster.nodes[1].blobs
    assert http.head(f"/api/blobs/{digest}").status_code == 404  # b lacks it
    assert http.head(f"/api/blobs/{digest}", headers={"X-SOLLOL-Host": a}).status_code == 200
    r = http.post(f"/api/blobs/{digest}", content=data)
    assert r.status_code == 201
    assert r.json()["hosts"][a]["outcome"] == "already there" and r.json()["hosts"][b]["outcome"] == "uploaded"
    assert paths(cluster.nodes[0]).count("/api/blobs/" + digest) == 1  # a was not sent it again
    r = http.post(f"/api/blobs/{digest}", content=data)
    assert r.status_code == 200 and {v["outcome"] for v in r.json()["hosts"].values()} == {"already there"}


def test_blob_digest_checks(two):
    cluster, _, http = two
    data = os.urandom(50_000)
    wrong = "sha256:" + "0" * 64
    r = http.post(f"/api/blobs/{wrong}", content=data)
    assert r.status_code == 400 and r.json()["error"].startswith(f"upload of {wrong} failed on ")
    assert {v["result"]["error"].split(",")[0] for v in r.json()["hosts"].values()} == {"digest mismatch"}
    assert all(n.blobs == {} for n in cluster.nodes)
    for bad in ("sha256:xyz", "md5:" + "0" * 32, "sha256:" + "0" * 63):
        assert http.post(f"/api/blobs/{bad}", content=data).status_code == 400
        assert http.head(f"/api/blobs/{bad}").status_code == 400
    assert all("/api/blobs/sha256:xyz" not in paths(n) for n in cluster.nodes)  # refused by the gateway


def test_ollama_client_create_blob_and_create_through_the_gateway(two, tmp_path):
    cluster, sollol, _ = two
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + os.urandom(200_000))
    client = ollama.Client(host=sollol.gateway_url, timeout=20, trust_env=False)
    try:
        digest = client.create_blob(path)
        assert all(n.blobs[digest] == path.stat().st_size for n in cluster.nodes)
        statuses = [p.status for p in client.create(model="tiny", files={"tiny.gguf": digest}, stream=True)]
        assert statuses[0] == "parsing GGUF" and statuses[-1] == "success"
        assert all("tiny:latest" in n.models for n in cluster.nodes)
        with pytest.raises(ollama.ResponseError) as exc:
            client.create(model="other", files={"other.gguf": "sha256:" + "1" * 64})
        assert exc.value.status_code == 400 and "no such file" in exc.value.error
    finally:
        client._client.close()


class RecordingHost:
    """A real HTTP server on 127.0.0.1 that speaks just enough Ollama (tags, ps, version, blobs) and counts the
    bytes of an upload as they arrive: what shows whether the gateway passes a body on as it reads it."""

    def __init__(self) -> None:
        self.received = 0
        self.blobs: dict[str, int] = {}
        self.address = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _start(self) -> None:
        def answer(body: dict):
            async def handler(_: web.Request) -> web.Response:
                return web.json_response(body)
            return handler

        app = web.Application(client_max_size=1 << 30)
        app.router.add_get("/api/tags", answer({"models": []}))
        app.router.add_get("/api/ps", answer({"models": []}))
        app.router.add_get("/api/version", answer({"version": "0.5.4"}))
        app.router.add_get("/", answer({}))
        app.router.add_route("HEAD", "/api/blobs/{digest}", self._head)
        app.router.add_post("/api/blobs/{digest}", self._upload)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.address = f"127.0.0.1:{self._runner.addresses[0][1]}"

    async def _head(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if request.match_info["digest"] in self.blobs else 404)

    async def _upload(self, request: web.Request) -> web.Response:
        hasher = hashlib.sha256()
        async for chunk in request.content.iter_any():
            hasher.update(chunk)
            self.received += len(chunk)
        digest = request.match_info["digest"]
        if "sha256:" + hasher.hexdigest() != digest:
            return web.json_response({"error": "digest mismatch"}, status=400)
        self.blobs[digest] = self.received
        return web.Response(status=201)

    def __enter__(self) -> "RecordingHost":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


def test_upload_is_passed_on_as_it_is_read_not_held(gateway):
    """The client sends half of an 8 MB body and waits: the host must already see bytes of it, from both
    uploads at once. A gateway that read the whole body before sending it on would never let that happen."""
    half = 4 * 1024 * 1024
    data = os.urandom(2 * half)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with RecordingHost() as one, RecordingHost() as two:
        sollol = gateway([one.address, two.address])

        def body():
            for i in range(0, half, 65536):
                yield data[i:i + 65536]
            wait_until(lambda: one.received > 0 and two.received > 0, timeout=20,
                       what="the hosts to receive part of the upload while the client still sends")
            yield from (data[i:i + 65536] for i in range(half, len(data), 65536))

        with httpx.Client(base_url=sollol.gateway_url, trust_env=False, timeout=30) as http:
            r = http.post(f"/api/blobs/{digest}", content=body())
        assert r.status_code == 201, r.text
        assert one.blobs == {digest: len(data)} and two.blobs == {digest: len(data)}


async def test_tee_reads_no_further_ahead_than_its_slowest_upload():
    chunk, n_chunks, depth = 65536, 160, 4  # a 10 MB body
    read_ahead: list[int] = []
    state = {"slow": 0}

    async def source():
        for _ in range(n_chunks):
            read_ahead.append((state["produced"] if "produced" in state else 0) - state["slow"])
            state["produced"] = state.get("produced", 0) + chunk
            yield b"x" * chunk

    tee = BodyTee(source(), 2, depth=depth)

    async def fast():
        return sum([len(c) async for c in tee.reader(0)])

    async def slow():
        total = 0
        async for c in tee.reader(1):
            total += len(c)
            state["slow"] = total
            await asyncio.sleep(0)
        return total

    pump = asyncio.ensure_future(tee.pump())
    totals = await asyncio.gather(fast(), slow())
    await pump
    assert totals == [n_chunks * chunk] * 2 and tee.bytes_read == n_chunks * chunk
    # at most its queue, the chunk in hand and the one being handed over: bounded, whatever the size
    assert max(read_ahead) <= (depth + 2) * chunk


async def test_tee_goes_on_without_an_upload_that_ended_and_stops_when_none_is_left():
    produced = []

    async def source():
        for i in range(100):
            produced.append(i)
            yield b"y" * 1000

    tee = BodyTee(source(), 2, depth=2)

    async def quits():
        async for _ in tee.reader(0):
            break  # its host answered early: the tee must not wait for it

    async def reads():
        return sum([len(c) async for c in tee.reader(1)])

    pump = asyncio.ensure_future(tee.pump())
    _, total = await asyncio.gather(quits(), reads())
    await pump
    assert total == 100_000

    tee2 = BodyTee(source(), 1, depth=2)
    produced.clear()
    pump = asyncio.ensure_future(tee2.pump())
    tee2.close(0)
    await asyncio.wait_for(pump, 5)
    assert len(produced) <= 3  # nobody left to read it: the rest of the body is not read


def test_progress_merger():
    m = ProgressMerger("/api/pull", ["a", "b"])
    assert m.feed("a", {"status": "pulling manifest"}) == {"status": "pulling manifest"}
    assert m.feed("b", {"status": "pulling manifest"}) is None
    assert m.feed("a", {"status": "pulling x", "digest": "d1", "total": 100, "completed": 10}) == \
        {"status": "pulling x", "digest": "d1", "total": 100, "completed": 10}
    assert m.feed("b", {"status": "pulling x", "digest": "d1", "total": 100}) == \
        {"status": "pulling x", "digest": "d1", "total": 200, "completed": 10}
    assert m.feed("a", {"status": "success"}) is None
    m.ended("a")
    assert m.feed("b", {"error": "disk full"}) is None
    m.ended("b")
    assert m.final() == {"error": "/api/pull failed on b: disk full (succeeded on a)",
                         "hosts": {"a": "success", "b": "error: disk full"}}
    ok = ProgressMerger("/api/create", ["a"], skipped={"c": "unhealthy"})
    ok.feed("a", {"status": "success"})
    ok.ended("a")
    assert ok.final() == {"status": "success", "hosts": {"a": "success", "c": "skipped: unhealthy"}}
    cut = ProgressMerger("/api/pull", ["a"])
    cut.feed("a", {"status": "pulling manifest"})
    cut.ended("a")
    assert cut.final()["error"] == "/api/pull failed on a: its progress stream ended without success"


# -- the operator token beyond loopback -----------------------------------------------------------------------------


def beyond_loopback(sollol, **settings) -> None:
    """What the gateway decides when it listens beyond loopback. The test gateway really listens on 127.0.0.1
    (tests bind nothing else); its configured bind address is what the decision reads, and 192.0.2.10 is a
    documentation address (RFC 5737) that nothing here binds or contacts."""
    sollol.config.gateway_host = "192.0.2.10"
    for key, value in settings.items():
        setattr(sollol.config, key, value)


def test_management_needs_the_operator_token_beyond_loopback(two):
    cluster, sollol, http = two
    digest = "sha256:" + hashlib.sha256(b"x").hexdigest()
    calls = [("POST", "/api/pull", {"model": "gemma3"}), ("POST", "/api/push", {"model": MODEL}),
             ("POST", "/api/create", {"model": "m", "from": MODEL}),
             ("POST", "/api/copy", {"source": MODEL, "destination": "c"}),
             ("DELETE", "/api/delete", {"model": MODEL})]
    beyond_loopback(sollol)
    for method, path, body in calls:
        r = http.request(method, path, json=body)
        assert r.status_code == 403 and "admin_token" in r.json()["error"], path
    r = http.post(f"/api/blobs/{digest}", content=b"x")
    assert r.status_code == 403
    sollol.config.admin_token = "s3cret"
    for method, path, body in calls:
        r = http.request(method, path, json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"], path
    assert http.post(f"/api/blobs/{digest}", content=b"x").status_code == 401
    assert all(n.received == [] for n in cluster.nodes)  # nothing reached a host
    assert all("llama3.2:latest" in n.models for n in cluster.nodes)
    # reading is not managing: show; a blob's HEAD is part of a create, so it is managing
    assert http.post("/api/show", json={"model": MODEL}).status_code == 200
    assert http.head(f"/api/blobs/{digest}").status_code == 401
    assert http.head(f"/api/blobs/{digest}", headers={"X-SOLLOL-Token": "s3cret"}).status_code == 404
    # with the token
    r = http.request("DELETE", "/api/delete", json={"model": MODEL}, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and all("llama3.2:latest" not in n.models for n in cluster.nodes)
    r = http.post(f"/api/blobs/{digest}", content=b"x", headers={"X-SOLLOL-Token": "s3cret"})
    assert r.status_code == 201


def test_management_open_lets_clients_without_the_token_manage(two):
    cluster, sollol, http = two
    beyond_loopback(sollol, admin_token="s3cret", management_open=True)
    r = http.post("/api/copy", json={"source": MODEL, "destination": "c"})
    assert r.status_code == 200 and all("c:latest" in n.models for n in cluster.nodes)
    r = http.put("/api/routing", json={"strategy": "p2c"})  # operator endpoints still need it
    assert r.status_code == 401


def test_on_loopback_management_needs_no_token_unless_one_is_set(two):
    cluster, sollol, http = two
    assert sollol.config.is_loopback_only()
    r = http.post("/api/copy", json={"source": MODEL, "destination": "c"})
    assert r.status_code == 200 and all("c:latest" in n.models for n in cluster.nodes)
    sollol.config.admin_token = "s3cret"  # then it is required on loopback too
    r = http.post("/api/copy", json={"source": MODEL, "destination": "d"})
    assert r.status_code == 401 and all("d:latest" not in n.models for n in cluster.nodes)


def test_unload_with_keep_alive_zero_reaches_every_host(sim_cluster, gateway, client):
    """`ollama stop` / `ollama rm` unload with an empty generate and keep_alive 0: every host unloads it."""
    sim = sim_cluster(n=2)
    sollol = gateway(sim.addresses)
    http = client(sollol)
    assert all("llama3.2:latest" in node.loaded for node in sim.nodes)
    r = http.post("/api/generate", json={"model": "llama3.2", "keep_alive": 0})
    assert r.status_code == 200 and r.json()["done_reason"] == "unload"
    assert all("llama3.2:latest" not in node.loaded for node in sim.nodes)
    assert all("llama3.2:latest" not in h.models_loaded for h in sollol.registry.hosts())
    r = http.post("/api/chat", json={"model": "llama3.2", "messages": [], "keep_alive": "0s"})
    assert r.status_code == 200
    assert http.post("/api/generate", json={"model": "nope", "keep_alive": 0}).status_code == 404
