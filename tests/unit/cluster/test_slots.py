"""SlotTable: limits per (host, model), accounting, busy and unfit corrections."""

from sollol_core.cluster.slots import SlotTable


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def table(limits=None, depth=0, clock=None):
    limits = limits if limits is not None else {}
    return SlotTable(lambda host: limits.get(host), lambda: depth, clock or Clock())


def test_unconfigured_host_is_unlimited():
    t = table()
    for _ in range(100):
        assert t.has_room("a:1", "llama3.2")
        t.acquire("a:1", "llama3.2")
    assert t.free("a:1", "llama3.2") is None and t.in_use("a:1", "llama3.2:latest") == 100


def test_limit_is_slots_plus_queue_depth_per_model():
    t = table({"a:1": 2}, depth=1)
    for _ in range(3):
        assert t.has_room("a:1", "llama3.2")
        t.acquire("a:1", "llama3.2")
    assert not t.has_room("a:1", "llama3.2")
    assert t.has_room("a:1", "qwen2.5")  # another model has its own slots
    t.release("a:1", "llama3.2:latest")  # 'llama3.2' and 'llama3.2:latest' are one model
    assert t.free("a:1", "llama3.2") == 1


def test_embedding_models_get_one_slot():
    t = table({"a:1": 4})
    assert t.slots("a:1", "nomic-embed-text", embedding=True) == 1
    t.acquire("a:1", "nomic-embed-text", embedding=True)
    assert not t.has_room("a:1", "nomic-embed-text")  # remembered as an embedding model
    assert t.slots("a:1", "llama3.2") == 4


def test_release_never_goes_below_zero_and_wakes_listeners():
    t = table({"a:1": 1})
    woken = []
    t.on_release(lambda: woken.append(1))
    t.release("a:1", "m")
    assert t.in_use("a:1", "m") == 0 and woken == [1]


def test_busy_lowers_the_limit_for_a_while():
    clock = Clock()
    t = table(clock=clock)  # unlimited host
    for _ in range(3):
        t.acquire("a:1", "m")
    assert t.mark_busy("a:1", "m", seconds=10) == 2  # held to what the two others hold
    t.release("a:1", "m")  # the refused request gives its slot back and waits in the gateway
    assert not t.has_room("a:1", "m")
    t.release("a:1", "m")
    assert t.has_room("a:1", "m") and t.free("a:1", "m") == 1
    clock.t += 11
    assert t.free("a:1", "m") is None  # unlimited again


def test_busy_with_nothing_else_of_ours_closes_the_host_briefly_then_one_at_a_time():
    clock = Clock()
    t = table(clock=clock)
    t.acquire("a:1", "m")
    assert t.mark_busy("a:1", "m") == 0
    t.release("a:1", "m")
    assert t.free("a:1", "m") == 0  # someone else fills it: nothing for a moment
    clock.t += 0.6
    assert t.free("a:1", "m") == 1


def test_unfit_is_per_model_and_expires():
    clock = Clock()
    t = table(clock=clock)
    t.mark_unfit("a:1", "big", "out of memory", seconds=60)
    assert t.is_unfit("a:1", "big:latest") and not t.is_unfit("a:1", "small") and not t.is_unfit("b:1", "big")
    assert t.view("a:1")[2] == ("big:latest",)
    clock.t += 61
    assert not t.is_unfit("a:1", "big")


def test_next_free_in_follows_the_oldest_request():
    clock = Clock()
    t = table({"a:1": 2}, clock=clock)
    t.acquire("a:1", "m")
    clock.t += 0.3
    t.acquire("a:1", "m")
    assert abs(t.next_free_in("a:1", "m", service_s=1.0) - 0.7) < 1e-9
    clock.t += 5
    assert t.next_free_in("a:1", "m", service_s=1.0) == 0.0


def test_view_lists_models_with_limits():
    t = table({"a:1": 3})
    t.acquire("a:1", "llama3.2")
    total, by_model, unfit = t.view("a:1")
    assert total == 1 and by_model == (("llama3.2:latest", 1, 3),) and unfit == ()


def test_a_generation_model_asked_for_embeddings_keeps_its_slots():
    """Embedding-only models run one request at a time; a chat model that also embeds does not."""
    t = table({"a:1": 4})
    t.acquire("a:1", "llama3.2")  # a chat
    t.release("a:1", "llama3.2")
    t.acquire("a:1", "llama3.2", embedding=True)
    assert t.slots("a:1", "llama3.2", embedding=True) == 4 and t.has_room("a:1", "llama3.2", embedding=True)
    t.acquire("a:1", "nomic-embed-text", embedding=True)
    assert t.slots("a:1", "nomic-embed-text", embedding=True) == 1
