"""What the cache shadow (shadow.CacheShadow) keeps per host: each slot's content (SlotEntry), the prompts
displaced to host RAM, the counts of how placing by it went (HostShadow), and the two things it hands out:
where a prompt would go (CacheMatch) and a placement it committed (Placed)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from .key import PromptKey


@dataclass(frozen=True, slots=True)
class CacheMatch:
    """Which idle slot of `model` on `host` would take a prompt, and what it would reuse and evict."""

    host: str
    model: str
    chars: int  # the prompt's canonical length
    cached_chars: int  # characters the host would not evaluate again
    fraction: float  # cached_chars / chars
    slot: int  # index of the slot the host would choose; -1: no idle slot
    displaced: bool  # the reuse comes from a prompt displaced to host RAM earlier
    evicts_active: bool  # the chosen slot holds another conversation used within active_s
    victim_idle_s: float  # seconds since the chosen slot was last used; inf when empty (or none chosen)
    free_slots: int  # idle slots of the model on the host
    active: int  # slots of the model holding a conversation used within active_s (busy ones included)
    same_conversation: bool = False  # the chosen slot last held this conversation (same anchor or session)
    victim_chars: int = 0  # characters of the conversation it would evict (evicts_active), to evaluate again

    @property
    def uncached_chars(self) -> int:
        return self.chars - self.cached_chars


class SlotEntry:
    """What a slot (or a displaced prompt) holds: a prompt's blocks and who it belongs to."""

    __slots__ = ("model", "blocks", "chars", "bc", "anchor", "session", "used", "busy", "alive", "running")

    def __init__(self, model: str) -> None:
        self.model = model
        self.blocks: Any = None  # array('q') or None: empty / unknown
        self.chars = 0
        self.bc = 0
        self.anchor = 0
        self.session: Optional[str] = None
        self.used = -math.inf  # clock time of the last placement or completion
        self.busy = False
        self.alive = True  # False once removed from its host (a late completion then stores nothing)
        self.running: Optional[PromptKey] = None  # the prompt a busy slot is evaluating (it will hold it)


@dataclass(slots=True, eq=False)
class Placed:
    """A committed placement: the slot is busy until complete() or release()."""

    host: str
    model: str
    slot: int  # -1: no idle slot was free (the host queues it; the shadow stores nothing)
    key: PromptKey
    match: CacheMatch
    at: float
    observed_chars: Optional[int] = None  # reuse the answer showed, once observe() ran
    hit: bool = False  # counted as a hit in the host's hit rate
    done: bool = False
    observed: bool = False
    credited_s: float = 0.0
    _entry: Optional[SlotEntry] = field(default=None, repr=False)
    # what the slot held before this placement took it: (blocks, chars, block chars, anchor, session, used)
    _held: Optional[tuple[Any, int, int, int, Optional[str], float]] = field(default=None, repr=False)

    @property
    def cached_chars(self) -> int:
        return self.match.cached_chars

    @property
    def fraction(self) -> float:
        return self.match.fraction


class HostShadow:
    __slots__ = ("models", "displaced", "dindex", "nblocks", "placements", "hits", "predicted_hits",
                 "confirmed_hits", "corrections", "saved_s")

    def __init__(self) -> None:
        self.models: dict[str, list[SlotEntry]] = {}
        self.displaced: dict[SlotEntry, None] = {}  # oldest first (insertion order = last use)
        self.dindex: dict[tuple[str, int], dict[SlotEntry, None]] = {}  # (model, first block) -> entries
        self.nblocks = 0
        self.placements = 0
        self.hits = 0
        self.predicted_hits = 0
        self.confirmed_hits = 0
        self.corrections = 0
        self.saved_s = 0.0


def slot_count(slots: Optional[int]) -> int:
    """Slots of a model on a host: None (not configured) means Ollama's default, 1."""
    if slots is None:
        return 1
    try:
        return max(1, int(slots))
    except (TypeError, ValueError):
        return 1
