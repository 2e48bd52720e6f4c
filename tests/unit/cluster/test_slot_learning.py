"""Learned slots: a (host, model) without num_parallel learns its slots from its answers' timings: it grows
while requests run beside each other without waiting (a probe one above), shrinks when they wait, resets on
a restart, and a configured value always wins."""

from __future__ import annotations

from typing import Optional

from sollol_core.cluster.slot_learning import DOUBTS, PROBE_BACKOFF_MIN_S, SlotLearner, SlotTicket
from sollol_core.cluster.slots import SlotTable

H, M = "a:1", "llama3.2"
KEY = "llama3.2:latest"
WORK = 0.3  # seconds of prompt eval + eval per request


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Cluster:
    """A slot table that learns, with a host whose configured value and the default can be set."""

    def __init__(self, default: Optional[int] = None, configured: Optional[int] = None, learn: bool = True) -> None:
        self.clock = Clock()
        self.default, self.configured, self.learn = default, configured, learn
        self.learner = SlotLearner(lambda host: self.configured, lambda host: self.default, lambda: self.learn,
                                   clock=self.clock)
        limit_of = lambda host: self.configured if self.configured is not None else self.default  # noqa: E731
        self.slots = SlotTable(limit_of, lambda: 0, self.clock, learner=self.learner)

    def grant(self) -> SlotTicket:
        return self.slots.acquire(H, M)

    def answer(self, ticket: SlotTicket, wait_s: float = 0.0, at: Optional[float] = None) -> None:
        """The request's answer arrives `at` (default: now): it waited `wait_s` inside, then worked WORK."""
        if at is not None:
            self.clock.t = at
        self.slots.answered(ticket, wait_s, 0.001, WORK)
        self.slots.release(H, M, ticket)

    @property
    def learned(self) -> Optional[int]:
        return self.learner.learned(H, KEY)

    def one_waits_behind_one(self) -> None:
        """Two requests sent now: the second waits inside the host for the first one's WORK."""
        start = self.clock.t
        first, second = self.grant(), self.grant()
        self.answer(first, at=start + WORK)
        self.answer(second, wait_s=WORK, at=start + 2 * WORK)


def test_two_requests_that_each_wait_behind_one_running_teach_one_slot():
    c = Cluster()  # nothing configured, no default: unlimited until it learns
    assert c.slots.limit(H, M) is None
    c.one_waits_behind_one()
    assert c.learned is None  # one stretched answer may be a loaded machine's: not yet a bound
    c.one_waits_behind_one()
    assert c.learned == 1 and c.slots.limit(H, M) == 1 and c.slots.slots(H, M) == 1
    view = c.learner.views(H)[0]
    assert view.slots == 1 and view.waited == 2 and "waited 0.30 s behind 1" in view.last


def test_requests_that_end_together_do_not_count_as_one_slot():
    """Four equal requests end at the same moment the fifth starts: it waited behind four, not one."""
    c = Cluster()
    for _ in range(2):
        start = c.clock.t
        first = [c.grant() for _ in range(4)]
        probe = c.grant()
        for t in first:
            c.answer(t, at=start + WORK)
        c.answer(probe, wait_s=WORK, at=start + 2 * WORK)
    assert c.learned == 4


def three_run_together(c: Cluster) -> None:
    start = c.clock.t
    together = [c.grant() for _ in range(3)]
    for t in together:
        c.answer(t, at=start + WORK)  # all three ran at once, none waited


def test_a_wait_below_what_the_host_runs_beside_is_its_overhead_not_a_slot():
    """A loaded machine stretches answers: a host that keeps running three at once without a wait is not
    bounded by answers among them that seem to wait behind one (dashboard and load on two cores did that)."""
    c = Cluster()
    for _ in range(5):
        three_run_together(c)
        c.one_waits_behind_one()
    view = c.learner.views(H)[0]
    assert view.most_beside == 3 and view.waited == 5
    assert c.learned is None and c.slots.limit(H, M) is None


def test_waits_that_keep_coming_overrule_one_run_beside():
    """A one-slot server once seemed to run two at once (a stretched answer): the waits that follow, with
    nothing running beside since, teach its one slot all the same (real Ollama did this)."""
    c = Cluster()
    start = c.clock.t
    pair = [c.grant(), c.grant()]
    for t in pair:
        c.answer(t, at=start + WORK)
    assert c.learner.views(H)[0].most_beside == 2
    for _ in range(DOUBTS - 1):
        c.one_waits_behind_one()
    assert c.learned is None  # doubted, so far
    c.one_waits_behind_one()  # the DOUBTS-th overrules the run beside: now it suggests one slot ...
    c.one_waits_behind_one()  # ... and the next confirms it
    assert c.learned == 1


def test_running_beside_more_clears_a_wait_not_yet_confirmed():
    c = Cluster()
    c.one_waits_behind_one()  # suggests one slot
    start = c.clock.t
    pair = [c.grant(), c.grant()]
    for t in pair:
        c.answer(t, at=start + WORK)  # two ran at once without a wait: the suggestion was wrong
    start = c.clock.t
    first, second = c.grant(), c.grant()
    c.answer(first, at=start + WORK)
    c.answer(second, wait_s=WORK, at=start + 2 * WORK)  # one more stretched answer: nothing to confirm
    assert c.learned is None


def test_it_grows_by_a_probe_that_runs_beside_the_others_without_waiting():
    c = Cluster(default=1)  # Ollama's default, until something else is learned
    running = c.grant()
    assert not c.slots.has_room(H, M) and not c.slots.may_probe(H, M)  # not in the pair's first moments
    c.clock.t += PROBE_BACKOFF_MIN_S
    assert c.slots.may_probe(H, M)
    probe = c.grant()  # one above the one slot
    assert probe.probe and not c.slots.may_probe(H, M)  # one probe at a time
    c.answer(probe, at=c.clock.t + 0.3)  # it ran beside the first one, which is still running
    assert c.learned == 2 and c.slots.limit(H, M) == 2
    assert "1 → 2: ran beside 1" in c.learner.views(H)[0].last
    c.answer(running)


def test_a_probe_that_waits_backs_off_longer_each_time():
    c = Cluster(default=1)
    c.answer(c.grant(), at=100.3)
    c.clock.t = 100.0 + PROBE_BACKOFF_MIN_S
    running = c.grant()
    probe = c.grant()
    assert probe.probe
    c.answer(running, at=c.clock.t + 0.3)
    c.answer(probe, wait_s=0.3, at=c.clock.t + 0.3)
    assert c.learned == 1  # one more waited: the default was right, now it is learned
    c.grant()
    assert not c.slots.may_probe(H, M)  # backing off
    c.clock.t += PROBE_BACKOFF_MIN_S
    assert c.slots.may_probe(H, M)
    probe = c.grant()
    c.answer(probe, wait_s=0.2, at=c.clock.t + 0.5)
    c.clock.t += 3 * PROBE_BACKOFF_MIN_S
    assert not c.slots.may_probe(H, M)  # four times as long now
    c.clock.t += PROBE_BACKOFF_MIN_S
    assert c.slots.may_probe(H, M)
    view = c.learner.views(H)[0]
    assert view.probes == 2 and view.probes_failed == 2


def test_it_shrinks_when_requests_wait_at_the_default():
    c = Cluster(default=3)
    c.one_waits_behind_one()
    c.one_waits_behind_one()  # only one ran at a time, twice
    assert c.learned == 1 and c.slots.limit(H, M) == 1
    c.one_waits_behind_one()
    assert c.learned == 1


def test_answers_without_timings_teach_nothing_and_a_probe_without_them_backs_off():
    c = Cluster(default=1)
    c.grant()
    c.clock.t += PROBE_BACKOFF_MIN_S
    probe = c.grant()
    c.slots.answered(probe, None, None, None)  # an OpenAI answer: no durations
    c.slots.release(H, M, probe)
    assert c.learned is None and not c.slots.may_probe(H, M)
    c.clock.t += PROBE_BACKOFF_MIN_S
    assert c.slots.may_probe(H, M)


def test_a_wait_with_none_of_ours_running_is_another_clients():
    c = Cluster()
    alone = c.grant()
    c.answer(alone, wait_s=0.5, at=101.0)
    assert c.learned is None


def test_a_restart_forgets_what_was_learned():
    c = Cluster(default=2)
    c.one_waits_behind_one()
    c.one_waits_behind_one()
    assert c.learned == 1
    c.slots.forget_learned(H, M)  # its model left /api/ps
    assert c.learned is None and c.slots.limit(H, M) == 2  # back to the default
    a, b = c.grant(), c.grant()
    c.answer(a, at=101.0)
    c.answer(b, wait_s=0.3, at=101.3)
    c.slots.forget_learned(H)  # it went unreachable and came back
    assert c.learned is None and c.learner.views(H) == ()


def test_a_configured_num_parallel_always_wins():
    c = Cluster(configured=4)
    tickets = [c.grant() for _ in range(4)]
    for t in tickets[:3]:
        c.answer(t, at=100.3)
    c.answer(tickets[3], wait_s=0.3, at=100.6)
    assert c.learned is None and c.slots.limit(H, M) == 4 and not c.slots.may_probe(H, M)
    c.configured = None  # the operator unset it: learning applies from here
    c.clock.t = 101.0
    c.one_waits_behind_one()
    c.one_waits_behind_one()
    assert c.learned == 1


def test_learning_can_be_switched_off():
    c = Cluster(learn=False)
    a, b = c.grant(), c.grant()
    c.answer(a, at=100.3)
    c.answer(b, wait_s=0.3, at=100.6)
    assert c.learned is None and c.slots.limit(H, M) is None


def test_embeddings_are_never_probed_and_host_slots_shows_the_learned_value():
    c = Cluster(default=1)
    c.slots.acquire(H, "nomic-embed-text", embedding=True)
    assert not c.slots.may_probe(H, "nomic-embed-text", embedding=True)
    assert c.slots.host_slots(H) == 1  # the default
    c.grant()
    c.clock.t += PROBE_BACKOFF_MIN_S
    probe = c.grant()
    c.answer(probe, at=c.clock.t + 0.3)
    assert c.slots.host_slots(H) == 2
