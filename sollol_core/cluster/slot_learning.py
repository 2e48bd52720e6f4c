"""Learned slots: how many requests a (host, model) runs at once, read from Ollama's own timings.

Ollama measures `total_duration` from the start of its handler; `load_duration`, `prompt_eval_duration` and
`eval_duration` are the work. What is left is the time the request waited inside the host for a slot (and a
few milliseconds of overhead: 2-4 ms measured on Ollama 0.5.4). So each answer says when the host took the
request up (grant + load + wait) and when it finished it (+ prompt eval + eval), on the gateway's clock. SOLLOL
knows which of its own requests were in flight on the (host, model) when it granted each one; together with
their own answers they say how many slots the host has:

  waited       halfway through a request's wait every slot was taken: by at most the R others that may have
               been running then, so the host runs at most R at once: learned = min(learned, R), once a
               second wait (bounding R', with nothing running beside more in between) confirms it, as
               max(R, R'); unless the host was seen running more than R at once without a wait (ran
               beside, below): then the residual is most likely overhead stretched by a loaded machine, and
               bounds nothing, until such waits outnumber the answers running beside more than they say
               by DOUBTS (then the run beside was the stretched answer, and is forgotten)
  ran beside   halfway through a request's run, k others were running too by their own timings: the host
               runs at least k + 1 at once: learned = max(learned, k + 1)
  probe        while the (host, model) is full at its learned slots and requests wait in the gateway, one
               request more than the learned slots is let through now and then (placement asks
               `may_probe`): if it runs beside all the others, the host has one slot more; if it waits,
               the next probe waits longer (PROBE_BACKOFF_MIN_S, four times more each time, up to
               PROBE_BACKOFF_MAX_S)

Instants in the middle of a wait or a run, and margins of OVERLAP_SHARE of the work, keep requests that
end together (a batch of equal requests does) and the lag between the gateway's grant and the host's start
from deciding anything; a request still in flight counts as running (it would have answered by then had
it ended), one that ended without timings as running for the bound and not for the growth.

A wait is a residual above max(WAIT_MIN_S, WAIT_SHARE × the request's work). Answers without Ollama's
timings (the OpenAI and Anthropic endpoints, embeddings) teach nothing. Only hosts without a num_parallel of
their own learn (a configured value always wins); until a host's first evidence the fallback holds (the
config's default_num_parallel, else unlimited). A restart of the host forgets what was learned (`forget`:
it went unreachable and came back, or its loaded models left /api/ps).

Everything here runs in the core loop, except `views`, which the dashboard and /api/stats read under the
lock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..observability.snapshot import SlotLearningView

WAIT_MIN_S = 0.02  # a residual above this (or WAIT_SHARE of the work, when larger) is a wait for a slot
WAIT_SHARE = 0.2  # (a loaded machine stretches a few answers by some milliseconds: not a wait)
TRANSIT_S = 0.01  # least margin on the times read from answers (the gateway's grant is not the host's start)
OVERLAP_SHARE = 0.1  # ... else this share of the request's work
PROBE_BACKOFF_MIN_S = 2.0  # after a probe that waited, the next one waits this long, four times longer ...
PROBE_BACKOFF_GROWTH = 4.0  # ... after each further one (a probe that waits costs one request a service time)
PROBE_BACKOFF_MAX_S = 120.0  # ... up to this (a restart, which may bring more slots, forgets it all anyway)
MAX_SLOTS = 1024  # as num_parallel's own bound
DOUBTS = 3  # waits below what ran beside, beyond the answers that ran beside more, that overrule it


@dataclass(eq=False, slots=True)
class SlotTicket:
    """One request SOLLOL let through to a (host, model): when, beside which others, and when it ended."""

    host: str
    model: str  # the model key ("" for a request naming none)
    granted: float  # monotonic
    others: list["SlotTicket"] = field(default_factory=list)  # in flight on the pair when it was granted
    probe: bool = False  # let through one above the learned slots
    ended: Optional[float] = None  # monotonic; None while in flight
    answered: bool = False  # its answer's timings were read
    start: Optional[float] = None  # when the host took it up: granted + load + its wait (from its answer)
    done: Optional[float] = None  # when the host finished it: start + its work

    def surely_running(self, at: float, margin: float) -> bool:
        """The host ran it at `at` (with `margin` to spare): its own timings say so, or it was sent well before
        and is still in flight (its answer would have come by now had it ended by then)."""
        if self.start is not None and self.done is not None:
            return self.start + margin <= at <= self.done - margin
        return self.ended is None and self.granted + margin <= at

    def maybe_running(self, at: float, margin: float) -> bool:
        """The host may have been running it at `at`: its timings allow it, or, without them, it had not
        ended here by then."""
        if self.start is None or self.done is None:
            return self.ended is None or self.ended >= at - margin
        return self.start - margin <= at <= self.done + margin


@dataclass(slots=True)
class _Learning:
    """What one (host, model) taught so far."""

    slots: Optional[int] = None  # learned; None: no evidence yet (the fallback holds)
    waited: int = 0  # answers that waited for a slot inside the host
    ran_beside: int = 0  # answers that ran beside others without waiting
    most_beside: int = 0  # the most requests seen running at once without a wait (this one included)
    pending: Optional[int] = None  # the bound one wait suggested, until a second one confirms it
    doubts: int = 0  # waits bounding it below most_beside, less the answers that ran beside more since
    doubt_bound: int = 0  # the most those waits said ran
    probes: int = 0
    probes_failed: int = 0
    probe: Optional[SlotTicket] = None  # the probe in flight
    next_probe_at: float = 0.0
    backoff_s: float = PROBE_BACKOFF_MIN_S
    since: Optional[float] = None  # monotonic time of the first evidence
    changed_at: Optional[float] = None  # monotonic time of the last change of `slots`
    last: str = ""  # the last change, in words


class SlotLearner:
    """Learned slots per (host, model). `configured(host)` is the host's own num_parallel (None: none),
    `fallback(host)` what holds before anything is learned (default_num_parallel, None: unlimited),
    `enabled()` the config's learn_slots; all three are read on every decision."""

    def __init__(self, configured: Callable[[str], Optional[int]], fallback: Callable[[str], Optional[int]],
                 enabled: Callable[[], bool] = lambda: True, clock: Callable[[], float] = time.monotonic) -> None:
        self._configured = configured
        self._fallback = fallback
        self._enabled = enabled
        self._clock = clock
        self._pairs: dict[tuple[str, str], _Learning] = {}
        self._lock = threading.Lock()

    # reading ------------------------------------------------------------------------------------------
    def applies(self, host: str) -> bool:
        """The host learns: learning is on and it has no num_parallel of its own."""
        return self._enabled() and self._configured(host) is None

    def learned(self, host: str, model: str) -> Optional[int]:
        """The learned slots of (host, model) when they apply; None: the configured or fallback value holds."""
        st = self._pairs.get((host, model))
        if st is None or st.slots is None or not self.applies(host):
            return None
        return st.slots

    def learned_any(self, host: str) -> Optional[int]:
        """The most slots learned for any model of the host (what the cache shadow models), or None."""
        if not self.applies(host):
            return None
        with self._lock:  # also read by the views, from another thread
            values = [st.slots for (h, _), st in self._pairs.items() if h == host and st.slots is not None]
        return max(values) if values else None

    def may_probe(self, host: str, model: str) -> bool:
        """One request above the learned (or fallback) slots may go now: none is out, and the backoff passed
        (the first one waits PROBE_BACKOFF_MIN_S from the pair's first request: a moment's burst on a default
        that may well be right is no reason to make a request wait inside the host)."""
        if not self.applies(host):
            return False
        st = self._pairs.get((host, model))
        if st is None:
            return False
        current = st.slots if st.slots is not None else self._fallback(host)
        return (current is not None and current < MAX_SLOTS and st.probe is None
                and self._clock() >= st.next_probe_at)

    # the request's life --------------------------------------------------------------------------------
    def granted(self, ticket: SlotTicket) -> None:
        if not self.applies(ticket.host):
            return
        if ticket.probe or (ticket.host, ticket.model) not in self._pairs:
            with self._lock:
                st = self._state(ticket.host, ticket.model)
                if ticket.probe:
                    st.probe = ticket
                    st.probes += 1

    def ended(self, ticket: SlotTicket) -> None:
        """The request ended; a probe whose answer taught nothing (no timings) backs off like a failed one."""
        st = self._pairs.get((ticket.host, ticket.model))
        if st is not None and st.probe is ticket:
            with self._lock:
                st.probe = None
                if not ticket.answered:
                    self._back_off(st)

    def observe(self, ticket: SlotTicket, wait_s: float, load_s: float, work_s: float) -> None:
        """What an answer's timings say: `wait_s` the residual (total - load - prompt eval - eval), `load_s` its
        load_duration, `work_s` its prompt eval + eval."""
        ticket.answered = True
        if not self.applies(ticket.host):
            return
        with self._lock:
            self._observe(ticket, max(0.0, wait_s), max(0.0, load_s), max(0.0, work_s))

    def _observe(self, t: SlotTicket, wait_s: float, load_s: float, work_s: float) -> None:
        st = self._state(t.host, t.model)
        now = self._clock()
        threshold = max(WAIT_MIN_S, WAIT_SHARE * work_s)
        margin = max(TRANSIT_S, OVERLAP_SHARE * work_s)
        t.start = t.granted + load_s + wait_s  # on the gateway's clock (the others' are too: lags cancel)
        t.done = t.start + work_s
        fallback = self._fallback(t.host)
        current = st.slots if st.slots is not None else fallback
        probe = st.probe is t
        if wait_s > threshold:
            # halfway through its wait every slot was taken: by the others that may have been running then
            at = t.start - wait_s / 2
            running = sum(1 for x in t.others if x.maybe_running(at, margin))
            if not running:
                return  # none of ours was there to wait for: another client's requests (not ours to count)
            st.waited += 1
            if st.since is None:
                st.since = now
            if running + 1 <= st.most_beside and not probe:
                # the host ran more than that at once without a wait before: this residual is most likely
                # the host's overhead stretched (a loaded machine), and teaches no bound; unless such waits
                # keep coming with nothing running beside more meanwhile: then the run beside was the one
                # stretched, and it is forgotten
                st.doubts += 1
                st.doubt_bound = max(st.doubt_bound, running)
                if st.doubts < DOUBTS:
                    return
                st.most_beside, st.doubts, st.doubt_bound = running, 0, 0
            if current is None or running < current:
                if st.pending is None and not probe:  # one stretched answer may be a loaded machine's
                    st.pending = running
                    return
                bound, st.pending = max(running, st.pending if st.pending is not None else 0), None
                self._set(st, bound, now, f"{_was(current)}{bound}: waited {wait_s:.2f} s behind "
                                          f"{running} request(s) running (and one before it)")
            elif probe and st.slots is None:  # the fallback was right: one more waits
                self._set(st, current, now, f"{current}: one more than {current} waited {wait_s:.2f} s")
            if probe:
                st.probes_failed += 1
                self._back_off(st)
            return
        # halfway through its run the host ran it beside the others whose own timings say they ran then
        at = t.start + work_s / 2
        beside = sum(1 for x in t.others if x.surely_running(at, margin))
        if beside:
            st.ran_beside += 1
            st.most_beside = max(st.most_beside, beside + 1)
            if st.pending is not None and beside + 1 > st.pending:
                st.pending = None  # it ran beside more than the wait suggested: that wait bounded nothing
            if st.doubts and beside + 1 > st.doubt_bound:  # it ran beside more than the doubted waits said:
                st.doubts -= 1  # they are outvoted one for one
                if not st.doubts:
                    st.doubt_bound = 0
            if st.since is None:
                st.since = now
            if current is not None and beside + 1 > current:
                self._set(st, min(MAX_SLOTS, beside + 1), now,
                          f"{_was(current)}{beside + 1}: ran beside {beside} other(s) without waiting")
        if probe:  # it had a slot of its own (try one more), or the others ended too soon to tell (again)
            if current is not None and beside >= current:
                st.backoff_s = PROBE_BACKOFF_MIN_S
            st.next_probe_at = now

    def forget(self, host: str, model: Optional[str] = None) -> None:
        """The host restarted (or the model left it): what it taught no longer holds."""
        with self._lock:
            for key in [k for k in self._pairs if k[0] == host and (model is None or k[1] == model)]:
                del self._pairs[key]

    # views ---------------------------------------------------------------------------------------------
    def views(self, host: str) -> tuple[SlotLearningView, ...]:
        """The evidence per model of a host (the dashboard's host detail, /api/stats)."""
        now = self._clock()
        applies = self.applies(host)
        with self._lock:
            rows = sorted((m, st) for (h, m), st in self._pairs.items()
                          if h == host and (st.since is not None or st.probes))
            return tuple(SlotLearningView(
                model=m, slots=st.slots, applies=applies, waited=st.waited, ran_beside=st.ran_beside,
                most_beside=st.most_beside, probes=st.probes, probes_failed=st.probes_failed, last=st.last,
                learning_s=None if st.since is None or st.changed_at is None else round(st.changed_at - st.since, 2),
                changed_ago_s=None if st.changed_at is None else round(now - st.changed_at, 1),
                next_probe_in_s=round(max(0.0, st.next_probe_at - now), 1) if st.probes_failed else None)
                for m, st in rows)

    # helpers -------------------------------------------------------------------------------------------
    def _state(self, host: str, model: str) -> _Learning:
        st = self._pairs.get((host, model))
        if st is None:
            st = self._pairs[(host, model)] = _Learning(next_probe_at=self._clock() + PROBE_BACKOFF_MIN_S)
        return st

    def _set(self, st: _Learning, slots: int, now: float, why: str) -> None:
        st.slots = slots
        st.changed_at = now
        st.last = why

    def _back_off(self, st: _Learning) -> None:
        st.next_probe_at = self._clock() + st.backoff_s
        st.backoff_s = min(PROBE_BACKOFF_MAX_S, st.backoff_s * PROBE_BACKOFF_GROWTH)


def _was(current: Optional[int]) -> str:
    return "∞ → " if current is None else f"{current} → "
