"""Placement on its own: real registry, router, slots and prompt-cache shadow; no HTTP."""

import time

from sollol_core.cluster.hosts import HostRegistry
from sollol_core.cluster.routing import Router
from sollol_core.cluster.slots import SlotTable
from sollol_core.config import SollolConfig
from sollol_core.prompt_cache.canonical import prompt_key
from sollol_core.prompt_cache.liveness import still_going
from sollol_core.prompt_cache.shadow import CacheShadow
from sollol_core.request.call import Call
from sollol_core.request.placement import Decision, Placement, Wait

SYSTEM = "You are a careful assistant. " * 40  # ~1,200 characters


def world(hosts=("a:1", "b:1"), slots=2, weights=None, strategy="performance", clock=time.monotonic, **cache):
    config = SollolConfig(default_num_parallel=slots, cache=cache, routing_strategy=strategy,
                          routing_weights=weights or {})
    registry = HostRegistry()
    for h in hosts:
        registry.add(h)
        registry.update_models(h, ["m:latest"], ["m:latest"])
        registry.record_success(h, 50.0)
    router = Router(registry, strategy, config.routing_weights)
    table = SlotTable(lambda host: config.default_num_parallel, lambda: 0)
    shadow = CacheShadow(config.cache, clock=clock)
    return Placement(config, registry, router, table, shadow, lambda host: config.default_num_parallel), shadow


def conversation(n, turns=1, system=SYSTEM):
    messages = [{"role": "system", "content": system}, {"role": "user", "content": f"conversation {n}: hello"}]
    for t in range(1, turns):
        messages += [{"role": "assistant", "content": f"answer {t} of {n}"},
                     {"role": "user", "content": f"follow-up {t} in conversation {n}"}]
    return messages


def call_for(messages):
    data = {"model": "m", "messages": messages}
    return Call(endpoint="/api/chat", method="POST", path="/api/chat", body=b"", model="m", stream=False,
                timeout=5, prompt=prompt_key("/api/chat", data))


def place(p, shadow, c, complete=True):
    d = p.decide(c)
    assert isinstance(d, Decision), d
    placed = shadow.place(d.host, c.prompt, p.shadow_slots(d.host))
    p.slots.acquire(d.host, c.model)
    p.registry.begin(d.host)
    if complete:
        shadow.complete(placed)
        p.slots.release(d.host, c.model)
        p.registry.end(d.host)
    return d


def test_the_next_turn_goes_where_the_conversation_is_cached():
    p, shadow = world()
    first = place(p, shadow, call_for(conversation(1)))
    assert first.reason.startswith("cold")
    other = "b:1" if first.host == "a:1" else "a:1"
    p.registry.record_success(first.host, 400.0)  # the home is now slower on paper
    second = place(p, shadow, call_for(conversation(1, turns=2)))
    assert second.host == first.host
    assert second.reason.startswith("cached ") and "chars" in second.reason
    est = second.estimates
    assert est[first.host].cached_chars > 1000 and est[other].cached_chars == 0
    assert est[first.host].prefill_s < est[other].prefill_s


def test_cache_weight_zero_routes_by_the_other_terms_alone():
    p, shadow = world(weights={"cache": 0.0})
    first = place(p, shadow, call_for(conversation(1)))
    other = "b:1" if first.host == "a:1" else "a:1"
    p.registry.record_success(first.host, 2000.0)  # the home is much slower now
    second = place(p, shadow, call_for(conversation(1, turns=2)))
    assert second.host == other


def test_bounded_load_under_a_hot_prefix():
    hosts = ("a:1", "b:1", "c:1", "d:1")
    p, shadow = world(hosts=hosts, slots=8, load_epsilon=0.25)
    shared = "Shared agent instructions and tool list. " * 100  # every conversation shares this prefix
    counts = {h: 0 for h in hosts}
    for n in range(24):  # none completes: they all stay in flight
        d = place(p, shadow, call_for(conversation(n, system=shared)), complete=False)
        counts[d.host] += 1
    # fair share is 6 each; the bound is ceil(1.25 * share of the requests in flight)
    assert max(counts.values()) <= 8, counts
    second_homes = [h for h, n in counts.items() if n]
    assert len(second_homes) >= 3  # the hot prefix's home filled up: it is cached on other hosts now


def test_two_gateways_place_the_same_conversations_alike():
    p1, s1 = world(hosts=("a:1", "b:1", "c:1"))
    p2, s2 = world(hosts=("a:1", "b:1", "c:1"))
    for n in range(12):
        c = conversation(n)
        assert place(p1, s1, call_for(c)).host == place(p2, s2, call_for(c)).host


def test_a_restarted_gateway_sends_conversations_home():
    p1, s1 = world(hosts=("a:1", "b:1", "c:1"))
    own = {n: f"system prompt of agent {n}. " * 30 for n in range(9)}  # unrelated conversations
    homes = {n: place(p1, s1, call_for(conversation(n, system=own[n]))).host for n in range(9)}
    assert len(set(homes.values())) >= 2  # spread by their rendezvous hash, not all on one
    p2, s2 = world(hosts=("a:1", "b:1", "c:1"))  # a fresh gateway: empty shadow
    back = sum(place(p2, s2, call_for(conversation(n, turns=3, system=own[n]))).host == homes[n] for n in range(9))
    assert back >= 7


def test_a_cold_prompt_does_not_evict_a_conversation_still_going():
    p, shadow = world(slots=1)
    first = place(p, shadow, call_for(conversation(1)))
    # conversation 1 holds first.host's only slot and was used just now; an unrelated prompt goes elsewhere,
    # whatever its rendezvous hash prefers
    for n in range(2, 8):
        c = call_for(conversation(n, system=f"other system prompt {n} " * 20))
        d = p.decide(c)
        assert isinstance(d, Decision)
        if d.host == first.host:
            raise AssertionError(f"conversation {n} would evict conversation 1: {d.reason}")


def test_a_request_waits_for_a_faster_host_that_frees_first():
    p, shadow = world(hosts=("fast:1", "slow:1"), slots=1)
    p.registry.record_success("fast:1", 30.0)
    for _ in range(5):
        p.registry.record_success("slow:1", 800.0)
    p.slots.acquire("fast:1", "m")  # the fast host's only slot is taken
    c = call_for(conversation(1))
    d = p.decide(c)
    assert isinstance(d, Wait) and "fast:1" in d.reason
    assert isinstance(p.decide(c, ahead=40), Decision)  # far back in the line: the slow host is sooner


def test_all_slots_busy_is_a_wait_and_no_host_is_none():
    p, shadow = world(slots=1)
    for h in ("a:1", "b:1"):
        p.slots.acquire(h, "m")
    assert isinstance(p.decide(call_for(conversation(1))), Wait)
    for h in ("a:1", "b:1"):
        p.registry.drain(h)
    assert p.decide(call_for(conversation(1))) is None


def test_unfit_model_on_one_host_goes_to_the_other():
    p, shadow = world()
    p.slots.mark_unfit("a:1", "m", "out of memory")
    for n in range(5):
        assert place(p, shadow, call_for(conversation(n))).host == "b:1"


def test_slow_start_gives_a_readmitted_host_its_probe_share():
    p, shadow = world()
    p.registry.record_failure("b:1", "cannot connect")
    p.registry.mark_healthy("b:1")
    host = p.registry.get("b:1")
    host.readmitted_at = time.monotonic() - 27.0  # near the end of its ramp: about every request
    host.latency_ms = host.service_ms = 5000.0  # and on paper it looks bad: without slow start it would get nothing
    chosen = [p.decide(call_for(conversation(n))).host for n in range(10)]
    assert chosen.count("b:1") >= 5
    host.readmitted_at = time.monotonic() - 60.0  # ramp over: scored like everyone
    assert all(p.decide(call_for(conversation(n))).host == "a:1" for n in range(10, 15))


def test_the_shadow_holds_the_answer_too_so_the_next_turn_matches_all_of_it(sim_cluster, gateway, client):
    """Through the gateway: the answer streamed back is followed, so the next turn (which carries it as the
    assistant message) is cached up to its new user message."""
    from helpers import CHAT_MODEL, settled

    sim = sim_cluster(n=2, tokens=60)  # an answer of ~400 characters: several blocks; two hosts to choose from
    sollol = gateway(sim.addresses)
    http = client(sollol)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "first question"}]
    with http.stream("POST", "/api/chat", json={"model": CHAT_MODEL, "messages": messages}) as r:
        import json as _json

        answer = "".join(_json.loads(line)["message"]["content"] for line in r.iter_lines() if line)
    served_by = settled(sollol)[-1].host  # the stream's books are written after its last byte
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "second"}]
    key = prompt_key("/api/chat", {"model": CHAT_MODEL, "messages": messages})
    m = sollol.shadow.match(served_by, key, 1)
    without_answer = prompt_key("/api/chat", {"model": CHAT_MODEL, "messages": messages[:2]})
    # the answer is part of what the slot holds: without it the match would end inside the first prompt
    assert m.cached_chars > without_answer.chars + 128
    assert key.chars - m.cached_chars < 150  # only the new user message (and a partial block) is not


def test_a_host_restart_or_unload_clears_its_shadow(sim_cluster, gateway, client):
    from helpers import CHAT_MODEL, settled, wait_until

    sim = sim_cluster(n=2)  # two hosts: with one there is nothing to place by, and no shadow is kept
    sollol = gateway(sim.addresses, unhealthy_recheck_interval=0.2)
    http = client(sollol)
    chat = {"model": CHAT_MODEL, "messages": conversation(1), "stream": False}
    assert http.post("/api/chat", json=chat).status_code == 200
    home = settled(sollol)[-1].host
    other = next(a for a in sim.addresses if a != home)
    assert sollol.shadow.host_view(home)["entries"] == 1
    sim.kill(sim.addresses.index(home))
    assert http.post("/api/chat", json=chat).status_code == 200  # the other host takes it
    assert settled(sollol)[-1].host == other and sollol.shadow.host_view(other)["entries"] == 1
    sim.revive(sim.addresses.index(home))  # a restarted Ollama: nothing loaded, nothing cached
    wait_until(lambda: sollol.registry.get(home).state.value == "healthy", what="the host to be re-admitted")
    assert sollol.shadow.host_view(home)["entries"] == 0
    # an unload seen by the adaptive round (/api/ps no longer lists it) forgets that model's slots
    sollol.registry.update_models(other, [CHAT_MODEL + ":latest"], [])
    assert sollol.shadow.host_view(other)["entries"] == 0


def test_with_slots_unknown_the_load_bound_only_takes_away_the_cache_advantage():
    """No slots configured: every host is shadowed as one slot, which says nothing about its capacity, so a
    fast home over its bound is not pushed onto a slow host; it only stops counting its cache."""
    p, shadow = world(hosts=("fast:1", "slow:1"), slots=None)
    p.registry.record_success("fast:1", 30.0)
    for _ in range(5):
        p.registry.record_success("slow:1", 900.0)
    for n in range(6):  # six on the fast host, all sharing one prefix: answered, yet still counted in flight
        d = place(p, shadow, call_for(conversation(n)))
        assert d.host == "fast:1", d.reason
        p.registry.begin("fast:1")
    d = p.decide(call_for(conversation(99)))
    assert d.host == "fast:1" and "over its load bound" in d.reason
    assert d.estimates["fast:1"].over_bound


def teach(shadow, host, seconds, n=1):
    """The host evaluated a cold ~1,200-character prompt in `seconds`, `n` times; what its slots held is then
    forgotten (a teaching prompt is no conversation), the rate it learned stays."""
    from sollol_core.prompt_cache.feedback import Feedback

    for i in range(n):
        c = call_for(conversation(1000 + i, system=f"Teaching text {i}. " * 80))
        placed = shadow.place(host, c.prompt, 2)
        shadow.complete(placed)
        shadow.observe(placed, Feedback(prompt_eval_count=300, prompt_eval_duration_s=seconds))
    shadow.drop_host(host)
    assert shadow.rate_samples(host, "m:latest") == n


def test_one_answer_apart_is_no_reason_to_crowd_a_host_while_another_has_an_idle_slot():
    """Two like hosts whose rates were each learned from one answer (5 s against 7 s for the same prompt):
    the difference is within what one sample tells, so cold first turns fill the idle slots of both rather
    than evicting conversations on the one that measured faster."""
    p, shadow = world(slots=2)
    teach(shadow, "a:1", 5.0)
    teach(shadow, "b:1", 7.0)
    own = [f"Conversation {n} has its own long context. " * 30 for n in range(4)]  # nothing shared
    first = p.decide(call_for(conversation(0, system=own[0])))
    assert first.reason.startswith("cold; rendezvous")  # both hosts count as equal: the hash chooses
    hosts = [place(p, shadow, call_for(conversation(n, system=own[n]))).host for n in range(4)]
    assert sorted(hosts) == ["a:1", "a:1", "b:1", "b:1"], hosts
    # every conversation kept its slot: each next turn finds its home cached
    for n in range(4):
        d = place(p, shadow, call_for(conversation(n, turns=2, system=own[n])))
        assert d.reason.startswith("cached ") and d.host == hosts[n], (n, d.reason)


def test_a_host_known_to_be_slower_is_not_taken_for_an_equal():
    """Rates learned from many answers are known well: the genuinely faster host takes the cold prompt."""
    p, shadow = world(slots=4)
    teach(shadow, "a:1", 1.0, n=12)
    teach(shadow, "b:1", 4.0, n=12)
    own = [f"Conversation {n} has its own long context. " * 30 for n in range(3)]
    assert p.decide(call_for(conversation(0, system=own[0]))).reason.startswith("cold; balanced")
    assert [place(p, shadow, call_for(conversation(n, system=own[n]))).host for n in range(3)] == ["a:1"] * 3


def test_a_cold_prompt_evicts_no_conversation_still_going_while_a_host_has_an_empty_slot():
    p, shadow = world(slots=1)
    own = [f"Conversation {n} has its own long context. " * 30 for n in range(3)]
    first = place(p, shadow, call_for(conversation(0, system=own[0])))
    second = place(p, shadow, call_for(conversation(1, system=own[1])))
    assert {first.host, second.host} == {"a:1", "b:1"}
    third = p.decide(call_for(conversation(2, system=own[2])))  # both slots hold a conversation still going
    assert isinstance(third, Decision) and third.estimates[third.host].evicts_active


def test_evicting_a_conversation_counts_its_next_prefill_against_the_host():
    """The faster host's only slot holds a conversation still going: evicting it would cost that
    conversation its whole prefill again on its next turn, so a somewhat slower host with a free slot wins."""
    p, shadow = world(slots=1)
    teach(shadow, "a:1", 1.0, n=12)
    teach(shadow, "b:1", 1.5, n=12)
    own = [f"Conversation {n} has its own long context. " * 30 for n in range(2)]
    assert place(p, shadow, call_for(conversation(0, system=own[0]))).host == "a:1"
    d = p.decide(call_for(conversation(1, system=own[1])))
    assert d.host == "b:1" and d.estimates["a:1"].evicts_active and d.estimates["a:1"].evicted_s > 0.5


def test_a_cold_prompt_does_not_wait_for_a_slot_whose_conversation_it_would_evict():
    """The fast host's only slot runs conversation 0. Waiting for it would be quicker for a new conversation
    (about 0.25 s against 0.5 s on the idle slow host) were it not that taking that slot evicts conversation
    0, whose next turns would evaluate their prompt again: counted, the new conversation starts on the slow
    host. When what the slot runs is not known to be a conversation, it waits."""
    own = [f"Conversation {n} has its own long context. " * 30 for n in range(2)]
    decisions = []
    for known in (True, False):
        p, shadow = world(hosts=("fast:1", "slow:1"), slots=1)
        teach(shadow, "fast:1", 0.2, n=12)
        teach(shadow, "slow:1", 0.4, n=12)
        for _ in range(5):
            p.registry.record_success("fast:1", 30.0)
            p.registry.record_success("slow:1", 100.0)
        if known:
            assert place(p, shadow, call_for(conversation(0, system=own[0])), complete=False).host == "fast:1"
        else:
            p.slots.acquire("fast:1", "m")
            p.registry.begin("fast:1")
        decisions.append(p.decide(call_for(conversation(1, system=own[1]))))
    evicting, unknown = decisions
    assert isinstance(evicting, Decision) and evicting.host == "slow:1", evicting.reason
    assert evicting.estimates["fast:1"].evicts_active and evicting.estimates["fast:1"].evicted_s > 0.3
    assert isinstance(unknown, Wait) and "fast:1" in unknown.reason


def test_what_evicting_costs_every_host_alike_does_not_widen_the_band_of_equals():
    """Both hosts' only slots hold a long conversation still going, so evicting costs about as much on
    either (well over a second of prefill again); the cold prompts themselves cost 0.10 s on one and 0.16 s
    on the other. That difference is no tie for the conversations' hashes to break: every prompt goes to
    the faster host."""
    p, shadow = world(slots=1)
    teach(shadow, "a:1", 0.10, n=12)
    teach(shadow, "b:1", 0.16, n=12)
    long_context = [f"Conversation {n} with a long context of its own. " * 100 for n in range(2)]
    for n, host in enumerate(("a:1", "b:1")):
        c = call_for(conversation(n, system=long_context[n]))
        shadow.complete(shadow.place(host, c.prompt, 1))
    chosen = set()
    for n in range(2, 14):
        d = p.decide(call_for(conversation(n, system=f"A short unrelated prompt {n}. " * 40)))
        assert isinstance(d, Decision) and d.estimates["a:1"].evicted_s > 1.0
        chosen.add(d.host)
    assert chosen == {"a:1"}


def test_a_conversation_is_still_going_for_about_its_gap_then_has_probably_ended():
    assert still_going(1000.0, None) == 1.0  # no gap seen yet: every conversation in cache.active_s goes on
    assert still_going(0.0, 0.5) == 0.8  # right after a turn: unless it was its last (one in five)
    assert 0.45 < still_going(0.7, 0.5) < 0.55  # about even at 1.4 gaps
    assert still_going(5.0, 0.5) < 1e-3  # ten gaps idle: it has ended


def test_a_new_conversation_takes_the_slot_of_one_that_has_ended_not_of_one_going_on():
    """Both hosts' only slots hold a conversation; the faster host's was used a moment ago, the other's five
    seconds ago, where conversations here come back after 0.3 s. Evicting the ended one costs nobody:
    the new conversation goes to the slower host. Before any gap was seen both count as going, and the
    faster host's lower prefill wins."""
    decisions = []
    for learned in (True, False):
        now = [1000.0]
        p, shadow = world(hosts=("fast:1", "slow:1"), slots=1, clock=lambda: now[0])
        teach(shadow, "fast:1", 0.10, n=12)
        teach(shadow, "slow:1", 0.20, n=12)
        if learned:  # eight conversations, each back after 0.3 s
            for n in range(8):
                first = call_for(conversation(100 + n, system=f"Earlier conversation {n}. " * 40))
                shadow.complete(shadow.place("fast:1", first.prompt, 1))
                now[0] += 0.3
                shadow.complete(shadow.place("fast:1", call_for(conversation(100 + n, turns=2,
                                                                               system=f"Earlier conversation {n}. " * 40)).prompt, 1))
            assert abs(shadow.return_gap_s() - 0.3) < 1e-9
        else:
            assert shadow.return_gap_s() is None
        ended = call_for(conversation(1, system="A conversation that ended. " * 40))
        shadow.complete(shadow.place("slow:1", ended.prompt, 1))
        now[0] += 5.0
        going = call_for(conversation(2, system="A conversation going on. " * 40))
        shadow.complete(shadow.place("fast:1", going.prompt, 1))
        now[0] += 0.05
        decisions.append(p.decide(call_for(conversation(3, system="A new conversation. " * 40))))
    knowing, not_yet = decisions
    assert isinstance(knowing, Decision) and knowing.host == "slow:1", knowing.reason
    assert knowing.estimates["slow:1"].evicted_s < 0.01 and knowing.estimates["fast:1"].evicted_s > 0.2
    assert isinstance(not_yet, Decision) and not_yet.host == "fast:1", not_yet.reason


def test_stats_tell_the_gap_between_turns_placement_weighs_evictions_by(sim_cluster, gateway, client):
    from helpers import CHAT_MODEL, settled

    sim = sim_cluster(n=2)
    sollol = gateway(sim.addresses)
    http = client(sollol)
    assert http.get("/api/stats").json()["cache"] == {"turn_gap_s": None}
    messages = [{"role": "system", "content": SYSTEM}]
    for turn in range(10):  # nine gaps between ten turns: enough to be trusted
        messages.append({"role": "user", "content": f"question {turn}"})
        r = http.post("/api/chat", json={"model": CHAT_MODEL, "messages": messages, "stream": False})
        assert r.status_code == 200
        messages.append({"role": "assistant", "content": r.json()["message"]["content"]})
        settled(sollol)
    gap = http.get("/api/stats").json()["cache"]["turn_gap_s"]
    assert gap is not None and 0.0 <= gap < 5.0


def test_a_host_held_to_too_few_learned_slots_probes_beside_hosts_with_room():
    """b learned 1 slot (say from answers a loaded machine stretched) while a, unbounded, carries the load:
    nothing ever waits in the gateway, so b could never show it has more. Once its probe backoff has passed,
    b competes one above its slots, takes the request where it looks best, and grows with what it shows."""
    from sollol_core.cluster.slot_learning import PROBE_BACKOFF_MIN_S, SlotLearner

    now = [100.0]
    clock = lambda: now[0]  # noqa: E731
    config = SollolConfig(routing_weights={"cache": 0.0})
    registry = HostRegistry()
    for h in ("a:1", "b:1"):
        registry.add(h)
        registry.update_models(h, ["m:latest"], ["m:latest"])
        registry.record_success(h, 50.0)
    learner = SlotLearner(lambda host: None, lambda host: None, clock=clock)
    table = SlotTable(lambda host: None, lambda: 0, clock, learner=learner)
    p = Placement(config, registry, Router(registry, "performance", config.routing_weights), table, None,
                  lambda host: None)
    for _ in range(2):  # twice, one request waited behind one: b learns 1 slot
        start = now[0]
        first, second = table.acquire("b:1", "m"), table.acquire("b:1", "m")
        now[0] = start + 0.3
        table.answered(first, 0.0, 0.001, 0.3)
        table.release("b:1", "m", first)
        now[0] = start + 0.6
        table.answered(second, 0.3, 0.001, 0.3)
        table.release("b:1", "m", second)
    assert learner.learned("b:1", "m:latest") == 1
    held = table.acquire("b:1", "m")  # b full at its one slot
    registry.begin("b:1")
    table.acquire("a:1", "m")
    registry.begin("a:1")
    c = Call(endpoint="/api/chat", method="POST", path="/api/chat", body=b"", model="m", stream=False, timeout=5)
    now[0] += PROBE_BACKOFF_MIN_S
    assert p.decide(c).host == "a:1"  # a runs no more at once than b may: nothing says b has more
    for _ in range(2):  # a carries three now
        table.acquire("a:1", "m")
        registry.begin("a:1")
    now[0] -= PROBE_BACKOFF_MIN_S
    assert p.decide(c).host == "a:1"  # within b's backoff: a, the only one with room
    now[0] += PROBE_BACKOFF_MIN_S
    d = p.decide(c)
    assert d.host == "b:1" and "probe: one above the 1 slot(s) learned there" in d.reason, d.reason
    probe = table.acquire("b:1", "m")
    assert probe.probe
    assert p.decide(c).host == "a:1"  # one probe at a time
    now[0] += 0.3
    table.answered(probe, 0.0, 0.001, 0.3)  # it ran beside the one held: b has two
    assert learner.learned("b:1", "m:latest") == 2
    table.answered(held, 0.0, 0.001, 0.3)


def test_a_fallback_limit_is_not_probed_while_hosts_have_room():
    """default_num_parallel, before anything is learned, is probed only when every host is full: it is what
    the operator said, not what a loaded machine taught."""
    from sollol_core.cluster.slot_learning import PROBE_BACKOFF_MIN_S, SlotLearner

    p, shadow = world(slots=1)
    now = [1000.0]
    p.slots.learner = SlotLearner(lambda host: None, lambda host: 1, clock=lambda: now[0])
    p.slots.acquire("b:1", "m")
    now[0] += PROBE_BACKOFF_MIN_S
    assert p.slots.may_probe("b:1", "m")  # were every host full, b would be probed now
    c = Call(endpoint="/api/chat", method="POST", path="/api/chat", body=b"", model="m", stream=False, timeout=5)
    p.registry.record_success("a:1", 5000.0)  # a looks much worse: b would win were it offered
    d = p.decide(c)
    assert isinstance(d, Wait) and "probe" not in d.reason, d  # it waits for b's slot in the gateway
