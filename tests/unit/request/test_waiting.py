"""The gateway queue's waiting room on its own: lines per class and client, deficit round robin, the counts."""

from sollol_core.cluster.hosts import HostRegistry
from sollol_core.cluster.routing import Router
from sollol_core.cluster.slots import SlotTable
from sollol_core.config import SollolConfig
from sollol_core.request.call import BATCH, HIGH, INTERACTIVE, Call
from sollol_core.request.fair_share import FairShare
from sollol_core.request.placement import Decision, Placement, Wait
from sollol_core.request.waiting import WaitingRoom


def room() -> WaitingRoom:
    config = SollolConfig(default_num_parallel=1)
    registry = HostRegistry()
    registry.add("a:1")
    registry.update_models("a:1", ["m:latest"], ["m:latest"])  # one slot of "m" in all: fair shares can be told
    table = SlotTable(lambda host: 1, lambda: 0)
    placement = Placement(config, registry, Router(registry), table, None, lambda host: 1)
    return WaitingRoom(FairShare(config, placement, table))


def call(model="m", cost=1.0, client="c") -> Call:
    return Call(endpoint="/api/chat", method="POST", path="/api/chat", body=b"{}", model=model, stream=False,
                timeout=5, client=client, cost=cost)


def anywhere(ticket) -> Decision:
    return Decision([], "test")


def never_fails(ticket, error) -> None:
    raise AssertionError(f"no ticket should fail here: {ticket.call.model} {error}")


async def drain(r: WaitingRoom, cls) -> list[str]:
    """Serve the class to the end; the clients in the order they were served."""
    order = []
    while True:
        ticket, decision = r.next_to_serve(cls, anywhere, never_fails)
        if ticket is None:
            return order
        assert decision is not None
        r.served(ticket)
        order.append(ticket.client)


async def test_counts_per_class_and_model_and_what_is_ahead():
    r = room()
    r.enter(call("m"), INTERACTIVE, "x", frozenset(), False)
    r.enter(call("m"), HIGH, "y", frozenset(), False)
    r.enter(call("other"), INTERACTIVE, "x", frozenset(), False)
    batch = r.enter(call("m"), BATCH, "z", frozenset(), False)
    assert r.total == 4
    assert r.depth() == {"high": 1, "interactive": 2, "batch": 1}
    assert r.ahead(HIGH, "m") == 1 and r.ahead(INTERACTIVE, "m") == 2 and r.ahead(BATCH, "m") == 3
    assert r.ahead(INTERACTIVE, "other") == 1
    assert r.models() == {"m", "other"}
    assert r.waiting_by_client() == {"x": 2, "y": 1, "z": 1}
    # the batch ticket: one per other client in its class or above (x, y), none of its own before it
    assert r.ahead_of(batch) == 2
    assert r.leave(batch) and not r.leave(batch)
    assert r.total == 3 and r.ahead(BATCH, "m") == 2 and not r.has_client("z")


async def test_clients_take_turns_by_cost():
    r = room()
    for _ in range(4):
        r.enter(call(cost=2.0), INTERACTIVE, "heavy", frozenset(), False)
    for _ in range(4):
        r.enter(call(cost=1.0), INTERACTIVE, "light", frozenset(), False)
    served = await drain(r, INTERACTIVE)
    assert len(served) == 8 and r.total == 0
    # while both wait, the light client is served twice for each request of the heavy one
    assert served[:6].count("light") == 4 and served[:6].count("heavy") == 2


async def test_a_client_served_goes_to_the_back_of_the_turns():
    r = room()
    for client in ("a", "a", "a", "b", "b", "b"):
        r.enter(call(cost=0.5), INTERACTIVE, client, frozenset(), False)
    # a's credit would cover two, but each service ends its turn
    assert await drain(r, INTERACTIVE) == ["a", "b", "a", "b", "a", "b"]


async def test_a_client_whose_line_emptied_comes_back_without_its_old_credit():
    r = room()
    r.enter(call(cost=0.25), INTERACTIVE, "a", frozenset(), False)
    assert await drain(r, INTERACTIVE) == ["a"]  # it earned 1 and spent 0.25
    r.enter(call(cost=1.0), INTERACTIVE, "b", frozenset(), False)
    r.enter(call(cost=0.75), INTERACTIVE, "a", frozenset(), False)
    # with the 0.75 left over, a would go first; it starts again from nothing, behind b
    assert await drain(r, INTERACTIVE) == ["b", "a"]


async def test_a_client_over_its_fair_share_lets_others_go_first_but_is_not_starved():
    r = room()
    r.fair.granted("x", "a:1", "m")  # x holds the one slot of m
    r.enter(call(client="x"), INTERACTIVE, "x", frozenset(), False)
    r.enter(call(client="y"), INTERACTIVE, "y", frozenset(), False)
    ticket, _ = r.next_to_serve(INTERACTIVE, anywhere, never_fails)
    assert ticket is not None and ticket.client == "y"
    assert "fair share" in r.waiting_why()["interactive"]
    # when every client that waits is over its share, the slot still goes to one of them (work-conserving)
    r.fair.granted("y", "a:1", "m")
    ticket, _ = r.next_to_serve(INTERACTIVE, anywhere, never_fails)
    assert ticket is not None and ticket.client == "x"


async def test_a_ticket_sent_back_to_the_front_keeps_its_turn():
    r = room()
    r.enter(call("first"), INTERACTIVE, "c", frozenset(), False)
    r.enter(call("again"), INTERACTIVE, "c", frozenset(), True)
    ticket, _ = r.next_to_serve(INTERACTIVE, anywhere, never_fails)
    assert ticket is not None and ticket.call.model == "again"


async def test_a_waiting_ticket_is_passed_over_and_says_why():
    r = room()
    held = r.enter(call("full"), INTERACTIVE, "c", frozenset(), False)
    free = r.enter(call("free"), INTERACTIVE, "c", frozenset(), False)

    def place(ticket):
        return Wait("every slot taken") if ticket.call.model == "full" else Decision([], "room")

    ticket, decision = r.next_to_serve(INTERACTIVE, place, never_fails)
    assert ticket is free and decision is not None and decision.reason == "room"
    assert held.why == "every slot taken"


async def test_tickets_no_host_can_take_are_failed_and_the_rest_still_served():
    r = room()
    gone = [r.enter(call("vanished"), INTERACTIVE, f"c{i}", frozenset(), False) for i in range(3)]
    kept = r.enter(call("m"), INTERACTIVE, "d", frozenset(), False)
    failed = []

    def place(ticket):
        if ticket.call.model == "vanished":
            raise LookupError("no host has it")
        return Decision([], "room")

    def fail(ticket, error):
        failed.append((ticket, type(error)))
        r.leave(ticket)

    ticket, _ = r.next_to_serve(INTERACTIVE, place, fail)
    assert ticket is kept
    assert [t for t, _ in failed] == gone and {e for _, e in failed} == {LookupError}


async def test_a_full_queue_sheds_the_newest_of_the_lowest_class():
    r = room()
    r.enter(call(), INTERACTIVE, "a", frozenset(), False)
    old_batch = r.enter(call(), BATCH, "b", frozenset(), False)
    new_batch = r.enter(call(), BATCH, "c", frozenset(), False)
    assert r.newest_below(HIGH) is new_batch
    r.leave(new_batch)
    assert r.newest_below(INTERACTIVE) is old_batch
    assert r.newest_below(BATCH) is None


async def test_batch_goes_first_once_in_every_one_over_batch_share_dispatches():
    r = room()
    assert r.class_order(since_batch=10, batch_share=0.25) == [HIGH, INTERACTIVE, BATCH]  # none waits
    r.enter(call(), BATCH, "b", frozenset(), False)
    assert r.class_order(since_batch=2, batch_share=0.25) == [HIGH, INTERACTIVE, BATCH]
    assert r.class_order(since_batch=3, batch_share=0.25) == [BATCH, HIGH, INTERACTIVE]
    assert r.class_order(since_batch=100, batch_share=0.0) == [HIGH, INTERACTIVE, BATCH]
