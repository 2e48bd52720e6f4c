"""Operator endpoints: hosts added, removed, drained, re-ranked; routing changed at run time; and the
admin token that guards them once the gateway listens beyond loopback."""

from __future__ import annotations

import httpx
import pytest

from sollol_core import SOLLOL, SollolConfig

from helpers import CHAT_MODEL, USER, models_known, wait_until

pytestmark = pytest.mark.timeout(60)

CHAT = {"model": CHAT_MODEL, "messages": USER, "stream": False}


def served_by(http: httpx.Client) -> str:
    r = http.post("/api/chat", json=CHAT)
    assert r.status_code == 200, r.text
    return r.json()["message"]["content"].split("]")[0].lstrip("[")


def stats_host(http: httpx.Client, address: str) -> dict:
    return next(h for h in http.get("/api/stats").json()["hosts"] if h["host"] == address)


# -- hosts ----------------------------------------------------------------------------------------


def test_add_host_puts_it_in_rotation(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    a, b = cluster.addresses
    sollol = gateway([a])
    http = client(sollol)
    r = http.post("/api/hosts", json={"host": f"http://{b}/", "priority": 2, "weight": 1.5})
    assert r.status_code == 201 and r.json() == {"status": "added", "host": b}
    assert sollol.registry.addresses() == [a, b] and sollol.config.hosts == [a, b]
    added = stats_host(http, b)
    assert (added["priority"], added["weight"], added["state"]) == (2, 1.5, "healthy")
    # the new host's models are learned at once, not at the next adaptive round
    wait_until(lambda: models_known(sollol), what="the new host's model list")
    assert "llama3.2:latest" in stats_host(http, b)["models_available"]
    sollol.drain_host(a)
    assert served_by(http) == "b"


@pytest.mark.parametrize("body,status,message", [
    ({}, 400, "host is required"),
    ({"host": 5}, 400, "host is required"),
    ({"host": "no port/here"}, 400, "not a host:port"),
    ({"host": "10.0.0.9:99999"}, 400, "not a host:port"),
    ({"host": "10.0.0.9:1", "priority": "high"}, 400, "priority must be a whole number"),
    ({"host": "10.0.0.9:1", "priority": -1}, 400, "priority must be >= 0"),
    ({"host": "10.0.0.9:1", "weight": 0}, 400, "weight must be"),
    ({"host": "10.0.0.9:1", "weight": -2}, 400, "weight must be"),
    ({"host": "10.0.0.9:1", "weight": "nan"}, 400, "weight must be"),
    ({"host": "10.0.0.9:1", "weight": None}, 400, "weight must be a number"),
])
def test_add_host_rejects_bad_input(sim_cluster, gateway, client, body, status, message):
    cluster = sim_cluster(n=1)
    sollol = gateway(cluster.addresses)
    http = client(sollol)
    r = http.post("/api/hosts", json=body)
    assert r.status_code == status and message in r.json()["error"]
    assert sollol.registry.addresses() == cluster.addresses  # nothing half-added
    assert http.get("/api/stats").status_code == 200 and served_by(http) == "a"


def test_add_existing_host_is_409(sim_cluster, gateway, client):
    cluster = sim_cluster(n=1)
    http = client(gateway(cluster.addresses))
    r = http.post("/api/hosts", json={"host": cluster.addresses[0]})
    assert r.status_code == 409 and "already registered" in r.json()["error"]


def test_remove_host(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    a, b = cluster.addresses
    sollol = gateway(cluster.addresses)
    http = client(sollol)
    r = http.delete(f"/api/hosts/{a}")
    assert r.status_code == 200 and r.json() == {"status": "removed", "host": a}
    assert sollol.registry.addresses() == [b] and sollol.config.hosts == [b]
    assert [h["host"] for h in http.get("/api/stats").json()["hosts"]] == [b]
    assert {served_by(http) for _ in range(4)} == {"b"}
    assert cluster.nodes[0].received == []
    r = http.delete(f"/api/hosts/{a}")
    assert r.status_code == 404 and "no such host" in r.json()["error"]


@pytest.mark.parametrize("method,suffix", [("DELETE", ""), ("POST", "/drain"), ("POST", "/undrain"),
                                           ("PATCH", "")])
def test_host_endpoints_answer_404_for_unknown_and_400_for_bad_hosts(sim_cluster, gateway, client,
                                                                     method, suffix):
    cluster = sim_cluster(n=1)
    sollol = gateway(cluster.addresses)
    http = client(sollol)
    kwargs = {"json": {"priority": 1}} if method == "PATCH" else {}
    r = http.request(method, f"/api/hosts/10.0.0.9:1{suffix}", **kwargs)
    assert r.status_code == 404 and "no such host 10.0.0.9:1" in r.json()["error"]
    r = http.request(method, f"/api/hosts/bad:port{suffix}", **kwargs)
    assert r.status_code == 400 and "not a host:port" in r.json()["error"]
    assert sollol.registry.get(cluster.addresses[0]).state.value == "healthy"


def test_drain_and_undrain(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    a, b = cluster.addresses
    sollol = gateway(cluster.addresses)
    http = client(sollol)
    r = http.post(f"/api/hosts/{a}/drain")
    assert r.status_code == 200 and r.json() == {"status": "draining", "host": a}
    assert stats_host(http, a)["state"] == "draining" and stats_host(http, a)["available"] is False
    assert {served_by(http) for _ in range(4)} == {"b"}
    r = http.post(f"/api/hosts/{a}/undrain")
    assert r.status_code == 200 and r.json() == {"status": "healthy", "host": a}
    assert stats_host(http, a)["state"] == "healthy"
    sollol.drain_host(b)
    assert served_by(http) == "a"


def test_patch_host_priority_and_weight(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    a, b = cluster.addresses
    sollol = gateway(cluster.addresses, routing_strategy="priority")
    http = client(sollol)
    r = http.patch(f"/api/hosts/{a}", json={"priority": 5, "weight": 2.5})
    assert r.status_code == 200 and r.json() == {"host": a, "priority": 5, "weight": 2.5}
    assert (stats_host(http, a)["priority"], stats_host(http, a)["weight"]) == (5, 2.5)
    assert {served_by(http) for _ in range(3)} == {"b"}  # b now outranks a
    assert http.patch(f"/api/hosts/{b}", json={"priority": 9}).json()["priority"] == 9
    assert {served_by(http) for _ in range(3)} == {"a"}


@pytest.mark.parametrize("body,message", [
    ({"priority": -1}, "priority must be >= 0"),
    ({"priority": "top"}, "priority must be a whole number"),
    ({"weight": 0}, "weight must be"),
    ({"weight": "heavy"}, "weight must be a number"),
    ({"weight": None}, "weight must be a number"),
    ({"label": "x"}, "unknown field(s) label"),
])
def test_patch_host_rejects_bad_input(sim_cluster, gateway, client, body, message):
    cluster = sim_cluster(n=1)
    a = cluster.addresses[0]
    sollol = gateway(cluster.addresses)
    http = client(sollol)
    r = http.patch(f"/api/hosts/{a}", json=body)
    assert r.status_code == 400 and message in r.json()["error"]
    host = sollol.registry.get(a)
    assert (host.priority, host.weight) == (0, 1.0)
    r = http.patch(f"/api/hosts/{a}", content=b"{oops")
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]


# -- routing --------------------------------------------------------------------------------------------


def test_put_routing_changes_strategy_and_weights_live(sim_cluster, gateway, client):
    cluster = sim_cluster(n=2)
    sollol = gateway(cluster.addresses)
    http = client(sollol)
    r = http.put("/api/routing", json={"strategy": "round_robin", "weights": {"latency": 0.7, "cpu_load": 0}})
    assert r.status_code == 200
    assert r.json()["strategy"] == "round_robin"
    assert r.json()["weights"]["latency"] == 0.7 and r.json()["weights"]["cpu_load"] == 0
    assert sollol.router.strategy_name == "round_robin" and sollol.router.weights.latency == 0.7
    assert sollol.config.routing_strategy == "round_robin" and sollol.config.routing_weights.latency == 0.7
    routing = http.get("/api/stats").json()["routing"]
    assert routing["strategy"] == "round_robin" and routing["weights"]["latency"] == 0.7
    seen = [served_by(http) for _ in range(4)]
    assert sorted(seen) == ["a", "a", "b", "b"] and seen[0] != seen[1]  # taking turns

    assert http.put("/api/routing", json={"strategy": "priority"}).json()["weights"]["latency"] == 0.7
    sollol.set_priority(cluster.addresses[0], 3)
    assert {served_by(http) for _ in range(3)} == {"b"}


@pytest.mark.parametrize("body,message", [
    ({"strategy": "fastest"}, "strategy must be one of"),
    ({"strategy": ["p2c"]}, "strategy must be one of"),
    ({"weights": [0.5]}, "weights must be an object"),
    ({"weights": {"latency": -1}}, "weights"),
    ({"weights": {"latency": "fast"}}, "weights"),
    ({"weights": {"latency": 0.9, "bogus": 1}}, "bogus"),
    ({"strategy": "p2c", "mode": "x"}, "unknown field(s) mode"),
])
def test_put_routing_rejects_bad_input_and_changes_nothing(sim_cluster, gateway, client, body, message):
    cluster = sim_cluster(n=1)
    sollol = gateway(cluster.addresses)
    http = client(sollol)
    before = sollol.router.weights.model_dump()
    r = http.put("/api/routing", json=body)
    assert r.status_code == 400 and message in r.json()["error"]
    assert sollol.router.strategy_name == "performance" and sollol.router.weights.model_dump() == before
    assert served_by(http) == "a"


# -- the admin token ---------------------------------------------------------------------------------------

OPERATOR_CALLS = [
    ("POST", "/api/hosts", {"host": "10.0.0.7:11434"}),
    ("DELETE", "/api/hosts/10.0.0.1:11434", None),
    ("POST", "/api/hosts/10.0.0.1:11434/drain", None),
    ("POST", "/api/hosts/10.0.0.1:11434/undrain", None),
    ("PATCH", "/api/hosts/10.0.0.1:11434", {"priority": 4}),
    ("PUT", "/api/routing", {"strategy": "p2c"}),
]


def unbound(**config) -> SOLLOL:
    """A SOLLOL built but never started: its ASGI app is called in-process, no socket is bound, so the
    config may name an address beyond loopback without anything listening there."""
    return SOLLOL(SollolConfig(hosts=["10.0.0.1:11434", "10.0.0.2:11434"], metrics_enabled=False, **config))


def state_of(sollol: SOLLOL) -> tuple:
    return (sollol.registry.addresses(), [(h.state.value, h.priority) for h in sollol.registry.hosts()],
            sollol.router.strategy_name)


async def call(sollol: SOLLOL, method: str, path: str, body, headers=None) -> httpx.Response:
    transport = httpx.ASGITransport(app=sollol.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sollol.test") as http:
        return await http.request(method, path, json=body, headers=headers or {})


@pytest.mark.parametrize("method,path,body", OPERATOR_CALLS)
async def test_beyond_loopback_operator_endpoints_need_the_token(method, path, body):
    sollol = unbound(gateway_host="0.0.0.0", admin_token="s3cret-token")
    assert not sollol.config.is_loopback_only() and not sollol.running
    if path.endswith("/undrain"):
        sollol.drain_host("10.0.0.1:11434")  # so that undraining it is a change
    before = state_of(sollol)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token-but-longer"},
                    {"X-SOLLOL-Token": "nope"}):
        r = await call(sollol, method, path, body, headers)
        assert r.status_code == 401, (headers, r.text)
        assert "Authorization: Bearer" in r.json()["error"]
    assert state_of(sollol) == before  # nothing changed without the token

    r = await call(sollol, method, path, body, {"Authorization": "Bearer s3cret-token"})
    assert r.status_code in (200, 201), r.text
    assert state_of(sollol) != before


async def test_bearer_scheme_is_case_insensitive():
    sollol = unbound(gateway_host="0.0.0.0", admin_token="s3cret-token")
    r = await call(sollol, "POST", "/api/hosts/10.0.0.1:11434/drain", None, {"Authorization": "bearer s3cret-token"})
    assert r.status_code == 200 and sollol.registry.get("10.0.0.1:11434").state.value == "draining"


async def test_token_also_accepted_in_x_sollol_token():
    sollol = unbound(gateway_host="0.0.0.0", admin_token="s3cret-token")
    r = await call(sollol, "POST", "/api/hosts/10.0.0.1:11434/drain", None, {"X-SOLLOL-Token": "s3cret-token"})
    assert r.status_code == 200 and sollol.registry.get("10.0.0.1:11434").state.value == "draining"


async def test_beyond_loopback_without_a_token_operator_endpoints_are_off():
    sollol = unbound(gateway_host="0.0.0.0")
    for method, path, body in OPERATOR_CALLS:
        r = await call(sollol, method, path, body, {"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "admin_token" in r.json()["error"]
    assert sollol.router.strategy_name == "performance" and len(sollol.registry) == 2


async def test_beyond_loopback_health_is_bare_and_stats_need_the_token():
    sollol = unbound(gateway_host="0.0.0.0", admin_token="s3cret-token")
    r = await call(sollol, "GET", "/api/health", None)
    assert r.status_code in (200, 503) and set(r.json()) == {"status"}  # nothing about the hosts
    assert (await call(sollol, "GET", "/api/stats", None)).status_code == 401
    r = await call(sollol, "GET", "/api/health", None, {"Authorization": "Bearer s3cret-token"})
    assert "hosts" in r.json()
    r = await call(sollol, "GET", "/api/stats", None, {"Authorization": "Bearer s3cret-token"})
    assert r.status_code == 200 and len(r.json()["hosts"]) == 2


def test_on_loopback_a_configured_token_is_required_too(sim_cluster, gateway, client):
    """A reverse proxy in front of a loopback bind makes every client look local: once set, the token is
    required on loopback as well."""
    cluster = sim_cluster(n=1)
    sollol = gateway(cluster.addresses, admin_token="s3cret-token")
    assert sollol.config.is_loopback_only() and sollol.gateway_url.startswith("http://127.0.0.1:")
    http = client(sollol)
    r = http.put("/api/routing", json={"strategy": "p2c"})
    assert r.status_code == 401 and sollol.router.strategy_name == "performance"
    r = http.put("/api/routing", json={"strategy": "p2c"}, headers={"Authorization": "Bearer s3cret-token"})
    assert r.status_code == 200 and sollol.router.strategy_name == "p2c"


def test_on_loopback_without_a_token_operator_endpoints_are_open(sim_cluster, gateway, client):
    cluster = sim_cluster(n=1)
    sollol = gateway(cluster.addresses)
    r = client(sollol).put("/api/routing", json={"strategy": "p2c"})
    assert r.status_code == 200 and sollol.router.strategy_name == "p2c"
