"""The OpenAPI document describes the API: schemathesis generates requests from it (bodies from the request
models, path parameters, headers) against a gateway on simulated nodes, and no answer is a 5xx; again on a
gateway with api_keys and admin_token set, with the key on every request (and the token on the operator
routes): the guard lets them through to the same checks, and still no answer is a 5xx.

Bounded: a few examples per operation (about 40 operations), well under a minute on two cores. Two operations
are left out, for what they would do beyond the gateway, not for their answers: POST /api/hosts (a generated
host would make the gateway contact addresses other than 127.0.0.1) and POST /api/batch/trigger (starts a Dask
cluster).
"""

from __future__ import annotations

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase

from sollol_core import SOLLOL, SollolConfig
from sollol_core.sim import SimNodeSpec

pytestmark = pytest.mark.timeout(120)

MODELS = ["llama3.2", "nomic-embed-text", "whisper"]
KEY, TOKEN = "sk-fuzz-5e8c1a", "tok-fuzz-0b7d42"
LEFT_OUT = [("POST", "/api/hosts"), ("POST", "/api/batch/trigger")]


def _document() -> dict:
    """The document as the gateway serves it (it depends on no address or host: built without starting)."""
    return SOLLOL(SollolConfig()).app.app.openapi()


schema = schemathesis.openapi.from_dict(_document())
for _method, _path in LEFT_OUT:
    schema = schema.exclude(method=_method, path=_path)


@pytest.fixture(scope="module")
def target(module_sim_cluster, module_gateway, tmp_path_factory):
    cluster = module_sim_cluster(*(SimNodeSpec(name=n, seed=i, latency_ms=1, tokens=2, tokens_per_s=0, models=MODELS)
                                   for i, n in enumerate("ab")))
    db = tmp_path_factory.mktemp("fuzz") / "batch.db"
    sollol = module_gateway(cluster.addresses, batch_db=str(db), autobatch_enabled=False, max_body_bytes=1 << 20)
    session = requests.Session()
    session.trust_env = False  # no proxies from the environment: 127.0.0.1 only
    yield sollol, cluster, session
    session.close()


def test_the_document_has_a_body_and_answers_for_every_operation():
    doc = _document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op.get("summary"), f"{method.upper()} {path}: no summary"
            assert any(code.startswith("2") for code in op["responses"]), f"{method.upper()} {path}: no answer"
            if method in ("post", "put", "patch") and not path.endswith(("/drain", "/undrain", "/trigger")):
                assert "requestBody" in op, f"{method.upper()} {path}: no request body"
    body = doc["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/MessagesRequest"}
    messages = doc["components"]["schemas"]["MessagesRequest"]
    assert set(messages["required"]) == {"model", "messages", "max_tokens"}
    assert doc["paths"]["/api/blobs/{digest}"]["post"]["requestBody"]["content"]["application/octet-stream"]
    assert "multipart/form-data" in doc["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # no route answers FastAPI's 422


@schema.parametrize()
@hypothesis.settings(max_examples=6, deadline=None, database=None, derandomize=True,
                     phases=[Phase.explicit, Phase.generate],
                     suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_5xx(case, target):
    sollol, cluster, session = target
    response = case.call(base_url=sollol.gateway_url, session=session, timeout=30)
    assert response.status_code < 500, (f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                        f"{response.text[:300]}")
    assert sollol.proxy.active >= 0


@pytest.fixture(scope="module")
def keyed_target(module_sim_cluster, module_gateway, tmp_path_factory):
    cluster = module_sim_cluster(*(SimNodeSpec(name=n, seed=i, latency_ms=1, tokens=2, tokens_per_s=0, models=MODELS)
                                   for i, n in enumerate("cd")))
    db = tmp_path_factory.mktemp("fuzz-keyed") / "batch.db"
    sollol = module_gateway(cluster.addresses, batch_db=str(db), autobatch_enabled=False, max_body_bytes=1 << 20,
                            api_keys={KEY: {"name": "fuzz"}}, admin_token=TOKEN)
    session = requests.Session()
    session.trust_env = False
    yield sollol, cluster, session
    session.close()


OPERATOR_PREFIXES = ("/api/hosts", "/api/routing", "/api/stats", "/metrics", "/api/pull", "/api/push", "/api/create",
                     "/api/copy", "/api/delete", "/api/blobs")


@schema.parametrize()
@hypothesis.settings(max_examples=4, deadline=None, database=None, derandomize=True,
                     phases=[Phase.explicit, Phase.generate],
                     suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_5xx_with_keys_configured(case, keyed_target):
    sollol, cluster, session = keyed_target
    operator = case.path.startswith(OPERATOR_PREFIXES)
    headers = {"Authorization": f"Bearer {TOKEN if operator else KEY}"}
    response = case.call(base_url=sollol.gateway_url, session=session, timeout=30, headers=headers)
    assert response.status_code < 500, (f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                        f"{response.text[:300]}")
    if response.status_code == 401:  # with the key, only an operator's action through a client route (an unload)
        assert "for the operator" in response.text, f"{case.method} {case.formatted_path}: {response.text[:300]}"
    assert KEY not in response.text and TOKEN not in response.text
