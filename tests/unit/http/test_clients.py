"""Client keys: who sent a request, its class, its rate; keys never leave."""

import pytest

from sollol_core.config import SollolConfig
from sollol_core.errors import ClientRefused
from sollol_core.http.clients import ClientKeys


def keys(**api_keys):
    return ClientKeys(SollolConfig(api_keys=api_keys))


def test_without_keys_the_client_is_its_address_and_the_header_picks_the_class():
    k = keys()
    assert k.identify({}, "10.1.1.1").name == "10.1.1.1"
    assert k.identify({}, "10.1.1.1").priority == "interactive"
    assert k.identify({"x-sollol-priority": "batch"}, "a").priority == "batch"
    assert k.identify({"x-sollol-priority": "HIGH"}, "a").priority == "high"
    with pytest.raises(ClientRefused) as e:
        k.identify({"x-sollol-priority": "urgent"}, "a")
    assert e.value.status == 400 and "X-SOLLOL-Priority" in e.value.message


def test_keys_required_when_configured():
    k = keys(**{"sk-aaa": {"name": "team-a", "priority": "high"}, "sk-bbb": {"name": "bulk", "priority": "batch"}})
    with pytest.raises(ClientRefused) as e:
        k.identify({}, "a")
    assert e.value.status == 401 and e.value.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(ClientRefused) as e:
        k.identify({"authorization": "Bearer sk-wrong"}, "a")
    assert e.value.status == 401 and "sk-wrong" not in e.value.message
    assert k.identify({"authorization": "bearer sk-aaa"}, "a").name == "team-a"
    assert k.identify({"x-api-key": "sk-bbb"}, "a").name == "bulk"  # Anthropic's header


def test_header_may_lower_but_not_raise_a_keys_class():
    k = keys(**{"sk-aaa": {"name": "team-a", "priority": "interactive"}})
    auth = {"authorization": "Bearer sk-aaa"}
    assert k.identify(auth, "a").priority == "interactive"
    assert k.identify(auth | {"x-sollol-priority": "batch"}, "a").priority == "batch"
    assert k.identify(auth | {"x-sollol-priority": "high"}, "a").priority == "interactive"


def test_rate_limit_answers_429_with_retry_after():
    k = keys(**{"sk-aaa": {"name": "slow", "requests_per_minute": 6}})  # 0.1/s, a burst of 1
    auth = {"authorization": "Bearer sk-aaa"}
    k.identify(auth, "a")
    with pytest.raises(ClientRefused) as e:
        k.identify(auth, "a")
    assert e.value.status == 429 and int(e.value.headers["Retry-After"]) >= 9
