"""The real `ollama` command (the `ollama-lib` binary of ../shared/real-ollama) pointed at the gateway
(OLLAMA_HOST) over two real Ollama servers: list, ps, show, run, cp, rm, and create from a Modelfile whose
FROM is a local GGUF file (its blob uploaded through the gateway to both servers).

Each server has its own model store here (hard links to the install's store), so what one command did on
each server can be checked on each server: `real-ollama start` would give both the install's one store.
Skips like tests/test_real_ollama.py when the tool or the install is absent (REAL_OLLAMA_DIR, default /tmp/ro).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest

from helpers import wait_until
from helpers.real_ollama import _free_port, _tool, _unavailable

pytestmark = [pytest.mark.real_ollama, pytest.mark.timeout(600)]

BASE = "gemma3-270m"
MANIFESTS = Path("manifests/registry.ollama.ai/library")


def _tool_env(tool: Path, folder: Path) -> dict[str, str]:
    """The exports `real-ollama env DIR` prints (LD_LIBRARY_PATH, HOME, OLLAMA_MODELS)."""
    out = subprocess.run([str(tool), "env", str(folder)], capture_output=True, text=True, timeout=30, check=True)
    env: dict[str, str] = {}
    for word in out.stdout.replace("export ", " ").split():
        key, _, value = word.partition("=")
        if value:
            env[key] = value
    return env


def _store_copy(source: Path, target: Path) -> None:
    """A model store of its own with the base model: hard links to the blobs (copies across file systems)."""
    (target / "blobs").mkdir(parents=True)
    manifest = source / MANIFESTS / BASE / "latest"
    (target / MANIFESTS / BASE).mkdir(parents=True)
    shutil.copy2(manifest, target / MANIFESTS / BASE / "latest")
    for blob in (source / "blobs").iterdir():
        try:
            os.link(blob, target / "blobs" / blob.name)
        except OSError:
            shutil.copy2(blob, target / "blobs" / blob.name)


def _base_blob(store: Path) -> Path:
    """The GGUF weights of the base model in a store (the largest layer of its manifest)."""
    import json

    manifest = json.loads((store / MANIFESTS / BASE / "latest").read_text())
    layer = next(x for x in manifest["layers"] if x["mediaType"] == "application/vnd.ollama.image.model")
    return store / "blobs" / layer["digest"].replace(":", "-")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tool = _tool()
    folder = Path(os.environ.get("REAL_OLLAMA_DIR", "/tmp/ro"))
    if not (tool.is_file() and os.access(tool, os.X_OK)):
        _unavailable(f"the real-ollama tool is not at {tool}")
    if not (folder / ".installed").is_file():
        _unavailable(f"real Ollama is not installed in {folder} (run: {tool} install {folder})")
    env = _tool_env(tool, folder)
    base = tmp_path_factory.mktemp("ollama-servers")
    procs: list[subprocess.Popen] = []
    logs: list[BinaryIO] = []  # each server's output, closed with it
    hosts: list[str] = []
    try:
        for i in range(2):
            store = base / f"store-{i}"
            _store_copy(Path(env["OLLAMA_MODELS"]), store)
            port = _free_port()
            server_env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | env | {
                "OLLAMA_MODELS": str(store), "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_NUM_PARALLEL": "1",
                "OLLAMA_KEEP_ALIVE": "5m", "OLLAMA_NOPRUNE": "1"}
            log = open(base / f"serve-{i}.log", "wb")
            logs.append(log)
            # from the install's run folder, as `real-ollama start` does: the loader also looks there
            procs.append(subprocess.Popen([str(folder / "bin" / "ollama-lib"), "serve"], cwd=folder / "run",
                                          env=server_env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL))
            hosts.append(f"127.0.0.1:{port}")
        for host in hosts:
            wait_until(lambda: _answers(host), timeout=60, interval=0.2, what=f"ollama serve on {host}")
        yield {"hosts": hosts, "stores": [base / f"store-{i}" for i in range(2)], "folder": folder, "env": env}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for log in logs:
            log.close()


def _answers(host: str) -> bool:
    try:
        return httpx.get(f"http://{host}/api/version", timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def tags(host: str) -> set[str]:
    return {m["name"] for m in httpx.get(f"http://{host}/api/tags", timeout=30, trust_env=False).json()["models"]}


@pytest.fixture(scope="module")
def cli(servers, module_gateway, tmp_path_factory):
    sollol = module_gateway(servers["hosts"], chat_timeout=180, management_timeout=600, connect_timeout=5)
    home = tmp_path_factory.mktemp("cli-home")
    port = sollol.gateway_url.rsplit(":", 1)[1]
    binary = servers["folder"] / "bin" / "ollama-lib"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | servers["env"] | {
        "HOME": str(home), "OLLAMA_HOST": f"127.0.0.1:{port}"}

    def run(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        r = subprocess.run([str(binary), *args], env=env, cwd=cwd or home, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        return r

    return sollol, run


def test_list_show_cp_rm(servers, cli):
    sollol, run = cli
    a, b = servers["hosts"]
    r = run("list")
    assert r.returncode == 0, r.stderr
    assert any(line.split()[0] == f"{BASE}:latest" for line in r.stdout.splitlines()[1:])
    r = run("show", BASE)
    assert r.returncode == 0 and "gemma3" in r.stdout and "architecture" in r.stdout, r.stdout + r.stderr

    r = run("cp", BASE, "mine")  # no X-SOLLOL-Host: the command cannot send one
    assert r.returncode == 0, r.stderr
    assert "copied" in r.stdout
    assert "mine:latest" in tags(a) and "mine:latest" in tags(b)  # on both servers that have the base
    r = run("list")
    assert "mine:latest" in r.stdout  # the gateway's list knows it at once
    r = run("rm", "mine")
    assert r.returncode == 0, r.stderr
    assert "deleted 'mine'" in r.stdout
    assert "mine:latest" not in tags(a) and "mine:latest" not in tags(b)
    r = run("rm", "mine")
    assert r.returncode != 0 and "not found" in r.stderr


def test_create_from_a_local_gguf_then_run_and_ps(servers, cli, tmp_path):
    sollol, run = cli
    a, b = servers["hosts"]
    weights = tmp_path / "model.gguf"
    blob = _base_blob(servers["stores"][0])
    try:
        os.link(blob, weights)
    except OSError:
        shutil.copy2(blob, weights)
    template = (servers["folder"] / "weights" / "Modelfile.gemma").read_text()
    modelfile = "\n".join(["FROM ./model.gguf"] + [line for line in template.splitlines()
                                                  if not line.startswith("FROM ")] + ["PARAMETER num_predict 8", "PARAMETER temperature 0"])
    (tmp_path / "Modelfile").write_text(modelfile + "\n")
    # the blob is new to neither store (hard links): drop it from the second, so the upload has work to do
    digest_file = servers["stores"][1] / "blobs" / blob.name
    digest_file.unlink()

    started = time.monotonic()
    r = run("create", "tiny", "-f", "Modelfile", cwd=tmp_path, timeout=500)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "success" in r.stdout + r.stderr
    assert "tiny:latest" in tags(a) and "tiny:latest" in tags(b)
    assert digest_file.is_file() and digest_file.stat().st_size == blob.stat().st_size  # uploaded to b
    created_s = time.monotonic() - started

    # an answer far longer than 8 tokens, asked without sampling: only num_predict can end it at 8 (a greeting
    # once ended by itself after 6)
    r = run("run", "tiny", "Count from 1 to 50, one number a line.", timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "no answer"
    r = run("ps")
    assert r.returncode == 0 and "tiny:latest" in r.stdout, r.stdout + r.stderr
    log = sollol.recent_requests()
    upload = [rec for rec in log if rec.endpoint == "/api/blobs/{digest}"]
    assert upload and upload[-1].status == 201  # the weights went through the gateway
    answered = [rec for rec in log if rec.model == "tiny" and rec.endpoint in ("/api/generate", "/api/chat")]
    assert answered[-1].status == 200 and answered[-1].host in (a, b)
    assert answered[-1].tokens == 8  # PARAMETER num_predict 8 of the Modelfile: the model created is the one run
    r = run("rm", "tiny")
    assert r.returncode == 0 and "tiny:latest" not in tags(a) and "tiny:latest" not in tags(b)
    print(f"create through the gateway (one upload of {blob.stat().st_size / 1e6:.0f} MB): {created_s:.1f} s")
