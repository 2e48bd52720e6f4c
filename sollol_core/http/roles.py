"""Who may call a route, what a route needs checked, and who the guard found the caller to be.

    Access  public (liveness), client (a key once api_keys is set), operator (the token once admin_token is
            set; without one, open on a loopback bind only)
    Policy  what one route needs: its access, whether management_open opens it to clients, whether it is
            inference (its requests count against a key's rate and may ask for a class), whether it takes a
            JSON body
    Caller  what the guard hands the route: the client's name for the books, its class, whether it holds
            the operator's rights, and the owner its batch jobs are filed under
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Optional

from ..request.call import INTERACTIVE, Priority


class Access(StrEnum):
    PUBLIC = "public"
    CLIENT = "client"
    OPERATOR = "operator"


PUBLIC, CLIENT, OPERATOR = Access.PUBLIC, Access.CLIENT, Access.OPERATOR


@dataclass(frozen=True, slots=True)
class Policy:
    """What the guard checks for one route (made once, when the route is declared)."""

    access: Access
    management: bool = False  # model management (and unload): open to clients when management_open is set
    inference: bool = False  # counts against the key's rate; X-SOLLOL-Priority chooses its class
    json_body: bool = False  # takes a JSON body: application/json, or no Content-Type


@dataclass(frozen=True, slots=True)
class Caller:
    """Who the guard let in."""

    name: str  # in the books: the key's name, else the client's address (bounded: request.tracked)
    priority: Priority = INTERACTIVE
    operator: bool = False  # would pass an operator route (the token; without one, a loopback bind)
    owner: Optional[str] = None  # batch jobs are filed under it and it sees only those; None: no such limit
