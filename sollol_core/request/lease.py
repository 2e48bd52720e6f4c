"""A lease: one slot of one (host, model), held from placement until its request ends, and what the host's
slot holds once it does (Settle). The gateway queue grants leases (admission.GatewayQueue) and takes each
back exactly once, when the books end it (Lease.end)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Callable, Optional, Protocol

from ..cluster.slot_learning import SlotTicket

if TYPE_CHECKING:
    from ..prompt_cache.feedback import Feedback
    from ..prompt_cache.key import PromptKey
    from ..prompt_cache.shadow_state import Placed


class LeaseOwner(Protocol):
    """Who granted the lease and takes it back (the gateway queue)."""

    def lease_ended(self, lease: "Lease", how: "Settle", answer: Optional[str],
                    feedback: Optional["Feedback"]) -> None: ...


class Settle(StrEnum):
    """What the host's slot holds once a request ends."""

    SERVED = "served"  # the host ran the prompt: the slot holds it (and the answer, when it is known)
    UNTOUCHED = "untouched"  # the host did not run it (busy, a 4xx, never sent): it holds what it held
    FAILED = "failed"  # broken off or unknown: what it holds is not known any more


@dataclass(eq=False, slots=True)
class Lease:
    """One slot of one (host, model), held from placement until the request ends."""

    host: str
    model: Optional[str]
    reason: str  # why this host (placement), for the request log
    wait_s: float
    claim: Optional["Placed"] = None  # the shadow's slot for this prompt (None: no prompt, or the cache is off)
    prompt: Optional["PromptKey"] = None
    client: str = ""
    uses_slot: bool = True
    slot: Optional[SlotTicket] = None  # the slot table's ticket (its answer's timings teach the host's slots)
    _owner: Optional[LeaseOwner] = None
    ended: bool = False
    preempt: Optional[Callable[[], None]] = None  # set while a batch request may still give its slot away

    @property
    def cached_chars(self) -> int:
        return self.claim.cached_chars if self.claim is not None else 0

    def end(self, how: Settle, *, answer: Optional[str] = None, feedback: Optional["Feedback"] = None) -> None:
        """Give the slot back (once; later calls do nothing). The shadow learns what the slot holds now:
        SERVED with the answer's text (the slot holds prompt and answer) and what the host reported
        (`feedback` corrects the prediction); UNTOUCHED keeps what it held; FAILED forgets it."""
        if self.ended:
            return
        self.ended = True
        self.preempt = None
        if self._owner is not None:
            self._owner.lease_ended(self, how, answer, feedback)
