"""Admission: the gateway queue. A request that finds no free slot waits here, and is placed the moment a
slot frees, on the best host at that moment (late binding), so it can still go anywhere.

    classes      high, interactive, batch: a higher class goes first; a starvation guard gives `batch` at
                 least `queue.batch_share` of the slots freed while batch requests wait
    fair shares  within a class, clients (API key name, else address) take turns by deficit round robin,
                 each charged its request's cost (an embed call: its inputs); first come first served
                 within a client
    bounds       a class's timeout (queue.*_timeout_s) and queue.max_depth: a request that would wait
                 longer, or finds the queue full, is refused at once (503 with Retry-After, the expected
                 wait); a full queue sheds its newest lowest-class request before refusing a higher one
    leaving      a request whose client goes away while it waits leaves at once and costs no host anything

The waiting requests themselves, their lines and whose turn it is, are the waiting room's
(waiting.WaitingRoom); the queue decides who may be placed where and hands out the leases.

`admit` returns a Lease on one slot of one (host, model), None when no host can take the request at all,
or raises Rejected / NoHostForModel / ClientGone. A lease is ended exactly once (Lease.end, called by the
books): it gives the slot back and tells the prompt-cache shadow what the host's slot holds now.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..cluster.slots import SlotTable
from ..config import SollolConfig
from ..errors import ClientGone, Rejected
from .call import BATCH, HIGH, INTERACTIVE, PRIORITY_OF, RANK_OF, Call, Priority
from .fair_share import FairShare
from .lease import Lease, Settle
from .placement import Decision, Placement, Wait
from .waiting import Ticket, WaitingRoom

if TYPE_CHECKING:
    from ..observability.metrics import Metrics
    from ..prompt_cache.feedback import Feedback
    from ..prompt_cache.shadow import CacheShadow

RETICK_S = 0.25  # while requests wait, placement is retried this often (a host's estimate may have aged)


@dataclass
class QueueStats:
    admitted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    expired: int = 0
    cancelled: int = 0
    preempted: int = 0  # batch requests that gave their slot to a waiting high one


class GatewayQueue:
    def __init__(self, config: SollolConfig, placement: Placement, slots: SlotTable,
                 shadow: Optional["CacheShadow"] = None, metrics: Optional["Metrics"] = None) -> None:
        self.config = config
        self.placement = placement
        self.slots = slots
        self.shadow = shadow
        self.metrics = metrics
        self._since_batch = 0  # dispatches since the last batch one (the starvation guard)
        self._dispatching = False
        self._again = False
        self._retick: Optional[asyncio.TimerHandle] = None
        self.stats = QueueStats()
        self.in_flight_by_client: dict[str, int] = {}
        self._interactive_waited: dict[Optional[str], float] = {}  # model -> when one last had to wait
        self.fair = FairShare(config, placement, slots)  # who asks for, waits for and holds which model's slots
        self.room = WaitingRoom(self.fair)
        self._preemptible: set[Lease] = set()  # batch requests whose answer has not begun (queue.preempt_batch)
        self.requests_by_client: dict[str, int] = {}
        self.rejected_by_client: dict[str, int] = {}
        slots.on_release(self.dispatch)

    # reading --------------------------------------------------------------------------------------
    def depth(self) -> dict[str, int]:
        return self.room.depth()

    def oldest_wait_s(self) -> dict[str, float]:
        return self.room.oldest_wait_s()

    def waiting_why(self) -> dict[str, str]:
        """Why the oldest request of each class that waits has not been placed (its last Wait reason)."""
        return self.room.waiting_why()

    def waiting_by_client(self) -> dict[str, int]:
        return self.room.waiting_by_client()

    @property
    def total(self) -> int:
        """Requests waiting, over every class."""
        return self.room.total

    def client_busy(self, client: str) -> bool:
        """Whether the client has a request waiting or in flight (request.tracked keeps it in the books)."""
        return self.in_flight_by_client.get(client, 0) > 0 or self.room.has_client(client)

    def forget_client(self, client: str) -> None:
        """Drop an idle client's books (request.tracked: the books keep a bounded number of clients)."""
        if self.client_busy(client):
            return
        self.requests_by_client.pop(client, None)
        self.in_flight_by_client.pop(client, None)
        self.rejected_by_client.pop(client, None)

    # admission ------------------------------------------------------------------------------------
    def timeout_of(self, cls: Priority) -> float:
        q = self.config.queue
        return {HIGH: q.high_timeout_s, INTERACTIVE: q.interactive_timeout_s, BATCH: q.batch_timeout_s}[cls]

    async def admit(self, call: Call, exclude: frozenset[str] = frozenset(), *,
                    front: bool = False) -> Optional[Lease]:
        """A slot for the call now, or after waiting; None when no host can take it at all."""
        cls = PRIORITY_OF.get(call.priority, INTERACTIVE)
        client = call.client or "anonymous"
        self.requests_by_client[client] = self.requests_by_client.get(client, 0) + 1
        started = time.monotonic()
        self.fair.asked(client, call.model, RANK_OF[cls], started)
        decision = self._decide(call, exclude, 0)  # raises NoHostForModel
        if decision is None:
            return None
        if isinstance(decision, Decision) and (front or not self._others_wait(call, cls)):
            return self._grant(call, decision, 0.0, client)
        if cls is not BATCH:
            self._interactive_waited[call.model] = time.monotonic()
        if cls is HIGH and self.config.queue.preempt_batch and isinstance(decision, Wait):
            self._preempt_for(call, exclude)
        ahead = self.room.ahead(cls, call.model)
        expected = self.placement.estimate_wait_s(call, ahead)
        timeout = self.timeout_of(cls)
        if expected > timeout:
            self._count_reject("wait_too_long", client)
            raise Rejected(503, f"the gateway queue is too long: about {expected:.0f} s to wait for a slot, over "
                                f"the {timeout:g} s limit of class {cls}; retry later", "wait_too_long", expected)
        if self.total >= self.config.queue.max_depth and not self._shed_for(cls):
            self._count_reject("queue_full", client)
            raise Rejected(503, f"the gateway queue is full ({self.config.queue.max_depth} waiting); retry later",
                           "queue_full", expected)
        ticket = self.room.enter(call, cls, client, exclude, front)
        self._arm_retick()
        if isinstance(decision, Decision):  # room, but others wait: the dispatch chooses who goes first
            self.dispatch()
        else:
            ticket.why = decision.reason
        waiter = asyncio.ensure_future(call.gone()) if call.gone is not None else None
        try:
            if waiter is None:
                lease = await asyncio.wait_for(asyncio.shield(ticket.future), timeout)
            else:
                pending: set[asyncio.Future[Any]] = {ticket.future, waiter}
                done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if ticket.future in done:
                    lease = ticket.future.result()
                elif waiter in done:
                    raise ClientGone()
                else:
                    raise asyncio.TimeoutError()
        except asyncio.TimeoutError:
            if self._withdraw(ticket):
                self.stats.expired += 1
                self._count_reject("timeout", client)
                waited = time.monotonic() - started
                raise Rejected(503, f"no slot became free within {waited:.0f} s (class {cls} waits at most "
                                    f"{timeout:g} s); retry later", "timeout",
                               self.placement.estimate_wait_s(call, ahead)) from None
            lease = ticket.future.result()  # granted at the very moment the wait ended
        except _NoHostNow:
            return None
        except ClientGone:
            if self._withdraw(ticket):
                self.stats.cancelled += 1
                raise
            ticket.future.result().end(Settle.UNTOUCHED)
            raise
        except asyncio.CancelledError:
            if not self._withdraw(ticket) and ticket.future.done() and not ticket.future.cancelled() \
                    and ticket.future.exception() is None:
                ticket.future.result().end(Settle.UNTOUCHED)  # granted as its request was cancelled
            raise
        finally:
            if waiter is not None and not waiter.done():
                waiter.cancel()
        lease.wait_s = time.monotonic() - started
        return lease

    # internals ------------------------------------------------------------------------------------
    def reserve_holds(self, model: Optional[str]) -> bool:
        """Interactive or high requests for this model wait now, or waited within queue.reserve_window_s:
        batch requests leave them queue.interactive_reserve slots of each host with two or more."""
        if self.room.ahead(INTERACTIVE, model):
            return True
        at = self._interactive_waited.get(model)
        return at is not None and time.monotonic() - at < self.config.queue.reserve_window_s

    def preemptible(self, lease: Lease, hook: Optional[Callable[[], None]]) -> None:
        """A batch request's lease may (hook) or may no longer (None) give its slot to a high request."""
        lease.preempt = hook
        if hook is None:
            self._preemptible.discard(lease)
        else:
            self._preemptible.add(lease)

    def _preempt_for(self, call: Call, exclude: frozenset[str]) -> None:
        """A high request must wait: a batch request on a host that could take it gives up its slot."""
        try:
            hosts = {h.address for h in self.placement.candidates(call, exclude)}
        except Exception:  # noqa: BLE001 - no host for the model: nothing to take
            return
        for lease in list(self._preemptible):
            if lease.host in hosts and lease.model == call.model and lease.preempt is not None:
                hook, lease.preempt = lease.preempt, None
                self._preemptible.discard(lease)
                self.stats.preempted += 1
                hook()
                return

    def reserved_for(self) -> tuple[str, ...]:
        """The models whose interactive reserve holds now."""
        if not self.config.queue.interactive_reserve:
            return ()
        models = self.room.models() | set(self._interactive_waited)
        return tuple(sorted(m for m in models if m is not None and self.reserve_holds(m)))

    def _decide(self, call: Call, exclude: frozenset[str], ahead: int) -> "Decision | Wait | None":
        """Placement, with the slots the client leaves free for others and a batch request's reserve or
        pipelining."""
        keep = self.fair.kept_for_others(call.client or "anonymous", call)
        if call.priority != BATCH:
            return self.placement.decide(call, exclude, ahead=ahead, keep=keep)
        q = self.config.queue
        if q.interactive_reserve and self.reserve_holds(call.model):
            return self.placement.decide(call, exclude, ahead=ahead, reserve=q.interactive_reserve, keep=keep)
        # pipelining is for the batch's embedding chunks: a chat held inside a host would stand in front of
        # the interactive requests that come next
        return self.placement.decide(call, exclude, ahead=ahead, pipeline=q.batch_pipeline if call.embedding else 0,
                                     keep=keep)

    def _others_wait(self, call: Call, cls: Priority) -> bool:
        """Requests of this class or a higher one wait for the same model: a newcomer queues behind them."""
        return self.room.total > 0 and self.room.ahead(cls, call.model) > 0

    def _withdraw(self, ticket: Ticket, error: Optional[BaseException] = None) -> bool:
        """Take a ticket out of the queue (its waiter gets `error`, if any); False when it had already been
        granted or answered."""
        if ticket.future.done():
            return False
        self.room.leave(ticket)
        if error is not None:
            ticket.future.set_exception(error)
        else:
            ticket.future.cancel()
        self._observe_depth()
        return True

    def _shed_for(self, cls: Priority) -> bool:
        """Queue full: drop the newest ticket of a class lower than `cls`; False when there is none."""
        newest = self.room.newest_below(cls)
        if newest is None:
            return False
        self._count_reject("shed", newest.client)
        self._withdraw(newest, Rejected(
            503, f"the gateway queue is full and a {cls} request needed the place of this {newest.cls} one; "
                 f"retry later", "shed", self.placement.estimate_wait_s(newest.call, self.total)))
        return True

    def _grant(self, call: Call, decision: Decision, wait_s: float, client: str) -> Lease:
        host = decision.host
        claim = None
        if call.prompt is not None and self.shadow is not None:
            est = decision.estimates.get(host)
            claim = self.shadow.place(host, call.prompt, self.placement.shadow_slots(host, call.embedding),
                                      est.match if est is not None else None)
        slot = self.slots.acquire(host, call.model, call.embedding) if call.uses_slot else None
        self.stats.admitted += 1
        if self.metrics is not None:
            self.metrics.child(self.metrics.queue_wait, call.priority).observe(wait_s)
        self.in_flight_by_client[client] = self.in_flight_by_client.get(client, 0) + 1
        self.fair.granted(client, host, call.model)
        return Lease(host=host, model=call.model, reason=decision.reason, wait_s=wait_s, claim=claim,
                     prompt=call.prompt, client=client, uses_slot=call.uses_slot, slot=slot, _owner=self)

    def lease_ended(self, lease: Lease, how: Settle, answer: Optional[str], feedback: Optional["Feedback"]) -> None:
        """A lease it granted ended (Lease.end, once): its slot back, and what the host's slot holds now to the
        shadow."""
        self._preemptible.discard(lease)
        client = lease.client
        self.in_flight_by_client[client] = max(0, self.in_flight_by_client.get(client, 1) - 1)
        self.fair.ended(client, lease.host, lease.model)
        claim = lease.claim
        if claim is not None and self.shadow is not None:
            if how is Settle.SERVED:
                held = None
                if answer and lease.prompt is not None:
                    from ..prompt_cache.canonical import extend_with_answer
                    held = extend_with_answer(lease.prompt, answer)
                self.shadow.complete(claim, answer=held)
                if feedback is not None:
                    self.shadow.observe(claim, feedback)
            elif how is Settle.UNTOUCHED:
                self.shadow.untouched(claim)
            else:
                self.shadow.release(claim, failed=True)
        if lease.uses_slot:
            self.slots.release(lease.host, lease.model, lease.slot)  # wakes dispatch
        else:
            self.dispatch()

    def dispatch(self) -> None:
        """Place waiting requests on hosts with free slots, best class first, fairly within a class."""
        if self._dispatching:
            self._again = True
            return
        self._dispatching = True
        try:
            while True:
                self._again = False
                progress = True
                while progress and self.total:
                    progress = False
                    order = self.room.class_order(self._since_batch, self.config.queue.batch_share)
                    for cls in order:
                        ticket, decision = self.room.next_to_serve(cls, self._place, self._fail)
                        if ticket is not None and decision is not None:
                            self._serve(ticket, decision)
                            progress = True
                            break
                if not self._again:
                    break
        finally:
            self._dispatching = False
        self._observe_depth()

    def _place(self, ticket: Ticket) -> "Decision | Wait | None":
        # the others waiting for this model are the line: with a line, a free slot is taken rather than
        # waited past for a faster host (no head-of-line blocking)
        return self._decide(ticket.call, ticket.exclude, self.room.ahead_of(ticket))

    def _serve(self, ticket: Ticket, decision: Decision) -> None:
        self.room.served(ticket)
        self._since_batch = 0 if ticket.cls == BATCH else self._since_batch + 1
        wait = time.monotonic() - ticket.enqueued
        lease = self._grant(ticket.call, decision, wait, ticket.client)
        if ticket.future.done():  # its waiter left at this very moment
            lease.end(Settle.UNTOUCHED)
            return
        ticket.future.set_result(lease)

    def _fail(self, ticket: Ticket, error: Optional[BaseException]) -> None:
        self._withdraw(ticket, error if error is not None else _NoHostNow())

    def _count_reject(self, reason: str, client: str) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        self.rejected_by_client[client] = self.rejected_by_client.get(client, 0) + 1
        if self.metrics is not None:
            self.metrics.queue_rejected.labels(reason).inc()

    def _observe_depth(self) -> None:
        if not self.total and self._retick is not None:
            self._retick.cancel()
            self._retick = None

    def _arm_retick(self) -> None:
        if self._retick is None:
            self._retick = asyncio.get_running_loop().call_later(RETICK_S, self._on_retick)

    def _on_retick(self) -> None:
        self._retick = None
        self.dispatch()
        if self.total:
            self._arm_retick()


class _NoHostNow(Exception):
    """Every host that could take a waiting request left (removed, drained, down)."""
