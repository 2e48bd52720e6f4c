"""Whether a conversation is still going: how likely a slot idle for a while holds one that will come back,
from the gaps between turns the cache shadow has seen (CacheShadow.return_gap_s). Placement weighs what
evicting a slot costs by it."""

from __future__ import annotations

import math
from typing import Optional

MIN_RETURN_GAP_S = 0.1  # the shortest mean gap between a conversation's turns taken from what was seen
ENDS_AFTER_TURN = 0.2  # the chance a conversation ends after any one of its turns (about five turns each)


def still_going(idle_s: float, gap_s: Optional[float]) -> float:
    """How likely a slot idle for `idle_s` holds a conversation that will come back, when conversations
    here come back after `gap_s` on average (None: not known yet, and every conversation within
    cache.active_s counts as going). A conversation ends after a turn with chance ENDS_AFTER_TURN, else
    returns after a gap taken as exponential: by Bayes, P(going | idle t) = (1 - q) e^(-t/gap) /
    ((1 - q) e^(-t/gap) + q). About even at 1.4 gaps; a slot idle for many gaps holds a conversation that
    has ended, whose eviction costs nobody anything."""
    if gap_s is None or idle_s == math.inf:
        return 1.0
    stays = (1 - ENDS_AFTER_TURN) * math.exp(-idle_s / max(gap_s, MIN_RETURN_GAP_S))
    return stays / (stays + ENDS_AFTER_TURN)
