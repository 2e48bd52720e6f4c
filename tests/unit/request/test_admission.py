"""The gateway queue on its own: real registry, router, slots and placement, no HTTP."""

import asyncio

import pytest

from sollol_core.cluster.hosts import HostRegistry
from sollol_core.cluster.routing import Router
from sollol_core.cluster.slots import SlotTable
from sollol_core.config import SollolConfig
from sollol_core.errors import Rejected
from sollol_core.request.admission import GatewayQueue
from sollol_core.request.call import Call
from sollol_core.request.lease import Settle
from sollol_core.request.placement import Placement


def make(hosts=("a:1",), slots=1, **queue):
    config = SollolConfig(default_num_parallel=slots, queue=queue)
    registry = HostRegistry()
    for h in hosts:
        registry.add(h)
        registry.update_models(h, ["m:latest"], ["m:latest"])
    router = Router(registry)
    table = SlotTable(lambda host: config.default_num_parallel, lambda: config.host_queue_depth)
    placement = Placement(config, registry, router, table, None, lambda host: config.default_num_parallel)
    return GatewayQueue(config, placement, table), registry, table


def call(priority="interactive", client="c", cost=1.0, model="m"):
    return Call(endpoint="/api/chat", method="POST", path="/api/chat", body=b"{}", model=model, stream=False,
                timeout=5, priority=priority, client=client, cost=cost)


async def test_a_free_slot_is_granted_at_once_and_the_next_waits():
    q, _, table = make()
    first = await q.admit(call())
    assert first.host == "a:1" and first.wait_s == 0 and table.in_use("a:1", "m") == 1
    waiting = asyncio.ensure_future(q.admit(call()))
    await asyncio.sleep(0.05)
    assert not waiting.done() and q.depth()["interactive"] == 1
    first.end(Settle.UNTOUCHED)
    second = await asyncio.wait_for(waiting, 1)
    assert second.host == "a:1" and second.wait_s > 0.04 and table.in_use("a:1", "m") == 1
    second.end(Settle.UNTOUCHED)
    second.end(Settle.UNTOUCHED)  # idempotent
    assert table.in_use("a:1", "m") == 0


async def test_late_binding_goes_to_the_host_that_frees_first():
    q, _, _ = make(hosts=("a:1", "b:1"))
    a = await q.admit(call())
    b = await q.admit(call())
    assert {a.host, b.host} == {"a:1", "b:1"}
    waiting = asyncio.ensure_future(q.admit(call()))
    await asyncio.sleep(0.02)
    (b if b.host == "b:1" else a).end(Settle.UNTOUCHED)  # b frees first
    got = await asyncio.wait_for(waiting, 1)
    assert got.host == "b:1"


async def test_higher_class_goes_first():
    q, _, _ = make()
    held = await q.admit(call())
    order = []

    async def one(priority, name):
        lease = await q.admit(call(priority, client=name))
        order.append(name)
        await asyncio.sleep(0)
        lease.end(Settle.UNTOUCHED)

    tasks = [asyncio.ensure_future(one("batch", "bulk"))]
    await asyncio.sleep(0.01)
    tasks.append(asyncio.ensure_future(one("interactive", "chat")))
    await asyncio.sleep(0.01)
    tasks.append(asyncio.ensure_future(one("high", "pager")))
    await asyncio.sleep(0.01)
    held.end(Settle.UNTOUCHED)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert order == ["pager", "chat", "bulk"]


async def test_starvation_guard_keeps_batch_moving():
    q, _, _ = make(batch_share=0.25)
    served = []

    async def worker(priority, n):
        for _ in range(n):
            lease = await q.admit(call(priority, client=priority))
            served.append(priority)
            await asyncio.sleep(0.001)
            lease.end(Settle.UNTOUCHED)

    # interactive requests alone would fill every slot; batch still gets about a quarter
    tasks = [asyncio.ensure_future(worker("interactive", 30)) for _ in range(3)]
    tasks.append(asyncio.ensure_future(worker("batch", 10)))
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    first_half = served[:40]
    assert first_half.count("batch") >= 5  # without the guard: 0 until every interactive one is done


async def test_fair_shares_between_clients_by_cost():
    q, _, _ = make()
    held = await q.admit(call())
    served = []

    async def one(client, cost):
        lease = await q.admit(call(client=client, cost=cost))
        served.append(client)
        lease.end(Settle.UNTOUCHED)

    tasks = [asyncio.ensure_future(one("loud", 1.0)) for _ in range(10)]
    await asyncio.sleep(0.01)
    tasks += [asyncio.ensure_future(one("quiet", 1.0)) for _ in range(2)]
    await asyncio.sleep(0.01)
    held.end(Settle.UNTOUCHED)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    # first come first served would put both quiet requests last; fair shares serve them within 4
    assert max(i for i, c in enumerate(served) if c == "quiet") <= 4
    assert served.count("loud") == 10


async def test_expensive_requests_are_charged_their_cost():
    q, _, _ = make()
    held = await q.admit(call())
    served = []

    async def one(client, cost):
        lease = await q.admit(call(client=client, cost=cost))
        served.append(client)
        lease.end(Settle.UNTOUCHED)

    tasks = [asyncio.ensure_future(one("embedder", 8.0)) for _ in range(3)]
    await asyncio.sleep(0.01)
    tasks += [asyncio.ensure_future(one("chat", 1.0)) for _ in range(8)]
    await asyncio.sleep(0.01)
    held.end(Settle.UNTOUCHED)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    # each 8-input embed call costs as much as 8 chats: the chats are not held behind all three
    assert served.index("chat") <= 1 and served[:9].count("chat") >= 6


async def test_timeout_answers_503_with_retry_after():
    q, registry, _ = make(interactive_timeout_s=0.2)
    registry.record_success("a:1", 100.0)  # a measured service time: the expected wait is short
    held = await q.admit(call())
    with pytest.raises(Rejected) as e:
        await q.admit(call())
    assert e.value.status == 503 and e.value.reason == "timeout" and int(e.value.headers["Retry-After"]) >= 1
    assert q.stats.expired == 1 and q.total == 0
    held.end(Settle.UNTOUCHED)


async def test_expected_wait_over_the_timeout_is_refused_at_once():
    q, registry, _ = make(interactive_timeout_s=1.0)
    registry.record_success("a:1", 5000.0)  # 5 s a request: a second one would wait longer than 1 s
    held = await q.admit(call())
    with pytest.raises(Rejected) as e:
        await asyncio.wait_for(q.admit(call()), 0.5)  # at once, not after the timeout
    assert e.value.reason == "wait_too_long" and int(e.value.headers["Retry-After"]) >= 5
    held.end(Settle.UNTOUCHED)


async def test_full_queue_sheds_the_lowest_class_first():
    q, _, _ = make(max_depth=2, batch_timeout_s=30)
    held = await q.admit(call())
    bulk = [asyncio.ensure_future(q.admit(call("batch", client=f"b{i}"))) for i in range(2)]
    await asyncio.sleep(0.02)
    chat = asyncio.ensure_future(q.admit(call("interactive")))
    await asyncio.sleep(0.02)
    shed = [t for t in bulk if t.done()]
    assert len(shed) == 1 and isinstance(shed[0].exception(), Rejected) and shed[0].exception().reason == "shed"
    assert shed[0] is bulk[1]  # the newest of the lowest class
    with pytest.raises(Rejected) as e:  # full again, and nothing lower than batch to shed
        await q.admit(call("batch", client="late"))
    assert e.value.reason == "queue_full"
    held.end(Settle.UNTOUCHED)
    lease = await asyncio.wait_for(chat, 1)
    lease.end(Settle.UNTOUCHED)
    (await asyncio.wait_for(bulk[0], 1)).end(Settle.UNTOUCHED)


async def test_a_cancelled_waiter_leaves_and_costs_no_slot():
    q, _, table = make()
    held = await q.admit(call())
    waiting = asyncio.ensure_future(q.admit(call()))
    await asyncio.sleep(0.02)
    waiting.cancel()
    await asyncio.sleep(0.01)
    assert q.total == 0
    held.end(Settle.UNTOUCHED)
    await asyncio.sleep(0.01)
    assert table.in_use("a:1", "m") == 0


async def test_client_going_away_while_queued():
    q, _, table = make()
    held = await q.admit(call())
    gone = asyncio.Event()

    c = call()
    c.gone = gone.wait
    waiting = asyncio.ensure_future(q.admit(c))
    await asyncio.sleep(0.02)
    gone.set()
    with pytest.raises(Exception) as e:
        await asyncio.wait_for(waiting, 1)
    assert type(e.value).__name__ == "ClientGone"
    assert q.total == 0 and q.stats.cancelled == 1
    held.end(Settle.UNTOUCHED)
    assert table.in_use("a:1", "m") == 0


async def test_slot_accounting_never_exceeds_the_limit_under_churn():
    q, _, table = make(hosts=("a:1", "b:1"), slots=2)
    peak = {"a:1": 0, "b:1": 0}

    async def one(i):
        try:
            lease = await q.admit(call(client=f"c{i % 3}"))
        except asyncio.CancelledError:
            return
        try:
            for h in peak:
                peak[h] = max(peak[h], table.in_use(h, "m"))
            await asyncio.sleep(0.001 * (i % 4))
        finally:  # cancelled while holding it, as the request path does: the lease ends all the same
            lease.end(Settle.SERVED if i % 5 else Settle.FAILED)  # some fail

    tasks = [asyncio.ensure_future(one(i)) for i in range(60)]
    await asyncio.sleep(0.005)
    for t in tasks[::7]:
        t.cancel()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert max(peak.values()) <= 2 and sum(peak.values()) >= 3
    assert table.in_use("a:1", "m") == 0 and table.in_use("b:1", "m") == 0 and q.total == 0


async def test_no_host_at_all_is_none():
    q, registry, _ = make()
    registry.drain("a:1")
    assert await q.admit(call()) is None


async def test_thousands_of_waiters_whose_host_vanishes_are_all_answered():
    """Placement fails for every waiter at once: the dispatch answers them in a loop (it used to recurse
    once per waiter, and raised RecursionError at about a thousand, stranding some)."""
    q, registry, _ = make(max_depth=10000, interactive_timeout_s=100000)
    held = await q.admit(call())
    waiters = [asyncio.ensure_future(q.admit(call(client=f"c{i % 50}"))) for i in range(5000)]
    await asyncio.sleep(0.05)
    assert q.total == 5000
    registry.remove("a:1")  # the only host goes away: no waiter can be placed any more
    held.end(Settle.UNTOUCHED)  # its slot frees: the dispatch looks at every waiter
    results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 30)
    assert len(results) == 5000 and all(r is None for r in results)  # each heard "no host"
    assert q.total == 0


async def test_interactive_reserve_holds_a_slot_back_from_batch_while_interactive_requests_wait():
    q, _, table = make(slots=2, reserve_window_s=0.4)
    b1 = await q.admit(call(priority="batch", client="bulk"))  # nothing waited yet: batch takes a slot
    i1 = await q.admit(call(client="chat"))
    i2 = asyncio.ensure_future(q.admit(call(client="chat")))  # both slots taken: an interactive request waits
    await asyncio.sleep(0.02)
    b2 = asyncio.ensure_future(q.admit(call(priority="batch", client="bulk")))
    await asyncio.sleep(0.02)
    assert q.reserve_holds("m")
    i1.end(Settle.SERVED)  # the interactive one goes first
    got = await asyncio.wait_for(i2, 1)
    b1.end(Settle.SERVED)  # a slot frees, but it is the host's reserve while interactive requests wait
    await asyncio.sleep(0.1)
    assert not b2.done() and table.in_use("a:1", "m") == 1
    assert "interactive" in q.waiting_why()["batch"]
    lease = await asyncio.wait_for(b2, 2)  # the reserve window passes: batch takes it (no idle slot for long)
    assert lease.host == "a:1" and not q.reserve_holds("m")
    got.end(Settle.SERVED)
    lease.end(Settle.SERVED)


async def test_a_client_gets_no_more_than_its_fair_share_while_others_wait():
    q, _, table = make(slots=4)
    loud = [await q.admit(call(client="loud")) for _ in range(4)]  # alone: it may take every slot
    assert table.in_use("a:1", "m") == 4
    waiting = {c: [asyncio.ensure_future(q.admit(call(client=c))) for _ in range(2)] for c in ("loud", "quiet")}
    await asyncio.sleep(0.02)
    loud[0].end(Settle.SERVED)
    loud[1].end(Settle.SERVED)  # two slots free while both clients wait: the quiet one gets both
    await asyncio.sleep(0.02)
    assert [t.done() for t in waiting["quiet"]] == [True, True]
    assert [t.done() for t in waiting["loud"]] == [False, False]  # loud holds 2 of 4 = its share of two clients
    for lease in loud[2:] + [t.result() for t in waiting["quiet"]]:
        lease.end(Settle.SERVED)
    for t in waiting["loud"]:
        (await asyncio.wait_for(t, 1)).end(Settle.SERVED)
    assert table.in_use("a:1", "m") == 0 and q.total == 0


async def test_a_client_leaves_a_slot_free_for_another_that_used_the_model_lately():
    q, _, table = make(slots=4, fair_window_s=0.3)
    (await q.admit(call(client="quiet"))).end(Settle.SERVED)  # quiet used the model a moment ago
    loud = [await q.admit(call(client="loud")) for _ in range(3)]
    fourth = asyncio.ensure_future(q.admit(call(client="loud")))
    await asyncio.sleep(0.02)
    assert not fourth.done() and table.in_use("a:1", "m") == 3  # one slot left for quiet
    quiet = await asyncio.wait_for(q.admit(call(client="quiet")), 0.05)  # found it, ahead of loud's fourth
    assert table.in_use("a:1", "m") == 4 and not fourth.done()
    quiet.end(Settle.SERVED)
    await asyncio.sleep(0.4)  # quiet has been silent for fair_window_s: loud alone again
    loud[0].end(Settle.SERVED)
    loud.append(await asyncio.wait_for(fourth, 1))
    loud.append(await asyncio.wait_for(q.admit(call(client="loud")), 0.05))
    assert table.in_use("a:1", "m") == 4  # every slot, as when it is alone
    for lease in loud[1:]:
        lease.end(Settle.SERVED)
    assert table.in_use("a:1", "m") == 0


async def test_a_client_with_a_backlog_asks_for_what_it_waits_for_before_its_rate_shows_it():
    """The host serves a request in a millisecond: four slots make 4,000 requests/s, 2,000 a client's share
    when two use the model, far above the rate a client's first few requests show. A client with three
    requests waiting asks for 3 x 1,000/s all the same: when one of its slots frees, it is kept for the other
    client instead of going to its next request."""
    q, registry, table = make(slots=4, fair_window_s=30)
    registry.record_success("a:1", 1.0)
    (await q.admit(call(client="quiet"))).end(Settle.SERVED)
    loud = [await asyncio.wait_for(q.admit(call(client="loud")), 0.05) for _ in range(4)]  # under its share
    waiting = [asyncio.ensure_future(q.admit(call(client="loud"))) for _ in range(3)]
    await asyncio.sleep(0.02)
    loud[0].end(Settle.SERVED)
    await asyncio.sleep(0.02)
    assert table.in_use("a:1", "m") == 3 and not any(w.done() for w in waiting)
    quiet = await asyncio.wait_for(q.admit(call(client="quiet")), 0.05)
    assert table.in_use("a:1", "m") == 4
    for w in waiting:
        w.cancel()
    for lease in [*loud[1:], quiet]:
        lease.end(Settle.SERVED)


async def test_an_interactive_client_leaves_no_slot_free_for_a_batch_client():
    """Kept slots are for clients of the same class or a higher one; chats ahead of bulk is the reserve's job."""
    q, _, table = make(slots=4, fair_window_s=30, interactive_reserve=0)
    (await q.admit(call(priority="batch", client="bulk"))).end(Settle.SERVED)
    chats = [await asyncio.wait_for(q.admit(call(client="chat")), 0.05) for _ in range(4)]
    assert table.in_use("a:1", "m") == 4
    for lease in chats:
        lease.end(Settle.SERVED)
    # the other way round the batch client keeps one for the chat client
    q, _, table = make(slots=4, fair_window_s=30, interactive_reserve=0)
    (await q.admit(call(client="chat"))).end(Settle.SERVED)
    bulk = [await asyncio.wait_for(q.admit(call(priority="batch", client="bulk")), 0.05) for _ in range(3)]
    fourth = asyncio.ensure_future(q.admit(call(priority="batch", client="bulk")))
    await asyncio.sleep(0.02)
    assert not fourth.done() and table.in_use("a:1", "m") == 3
    fourth.cancel()
    for lease in bulk:
        lease.end(Settle.SERVED)


async def test_without_fair_share_a_client_may_take_every_slot():
    q, _, table = make(slots=2, fair_share=False)
    (await q.admit(call(client="quiet"))).end(Settle.SERVED)
    loud = [await asyncio.wait_for(q.admit(call(client="loud")), 0.05) for _ in range(2)]
    assert table.in_use("a:1", "m") == 2
    for lease in loud:
        lease.end(Settle.SERVED)


async def test_the_slots_left_for_other_clients_are_on_the_fastest_host():
    """Shares are of capacity: fast serves 4 x 5 requests/s, slow 1 x 0.625; a third of 20.6/s is 6.9/s.
    A client asking for more leaves the others a slot each beyond what they hold, on the fast host."""
    config = SollolConfig(queue={"fair_window_s": 30})
    registry = HostRegistry()
    for h, ms in (("fast:1", 200.0), ("slow:1", 1600.0)):
        registry.add(h)
        registry.update_models(h, ["m:latest"], ["m:latest"])
        registry.record_success(h, ms)
    slots = {"fast:1": 4, "slow:1": 1}
    table = SlotTable(slots.get, lambda: 0)
    q = GatewayQueue(config, Placement(config, registry, Router(registry), table, None, slots.get), table)
    (await q.admit(call(client="quiet-a"))).end(Settle.SERVED)
    (await q.admit(call(client="quiet-b"))).end(Settle.SERVED)
    for _ in range(10):  # loud asks for 10 requests/s
        (await q.admit(call(client="loud"))).end(Settle.SERVED)
    loud = [await q.admit(call(client="loud")) for _ in range(2)]  # over its share from the second on, but
    assert [lease.host for lease in loud] == ["fast:1", "fast:1"]  # fast still had more than two free
    third = asyncio.ensure_future(q.admit(call(client="loud")))
    await asyncio.sleep(0.02)
    # fast has two free, both kept for the quiet clients; loud waits for one of its own there (0.2 s)
    # rather than take the slow host (1.6 s)
    assert not third.done() and table.in_use("fast:1", "m") == 2
    quiet = [await asyncio.wait_for(q.admit(call(client=c)), 0.05) for c in ("quiet-a", "quiet-b")]
    assert [lease.host for lease in quiet] == ["fast:1", "fast:1"]
    loud[0].end(Settle.SERVED)
    await asyncio.sleep(0.02)
    assert not third.done()  # the quiet clients hold two and find two more free: loud, one fast slot, is at its share
    loud[1].end(Settle.SERVED)
    assert (await asyncio.wait_for(third, 1)).host == "fast:1"  # its own slot freed: it takes one again
    third.result().end(Settle.SERVED)
    for lease in quiet:
        lease.end(Settle.SERVED)
    assert table.in_use("fast:1", "m") == table.in_use("slow:1", "m") == 0
