"""The one guard: every route's declared access (roles.Policy) enforced in one place, for both ways in.

The gateway's own server calls it for hot routes before their handler reads the body (access.answer_inbound);
FastAPI routes call it from their route class before their endpoint runs (access.DeclaredRoute); FastAPI's
own documentation routes are wrapped alike (access.declare_route). A route cannot skip it: the route
classes are the only way to declare a route, and a route that declares nothing is found by the route-table
test.

    browsers  Host and Origin on a loopback bind, Origin everywhere, the JSON content type (browsers.py)
    public    anyone (liveness)
    client    with api_keys set: a configured key (Authorization: Bearer, or x-api-key), or the operator
              token; the key names the client, its class and rate (clients.py); without keys anyone,
              named by address
    operator  with admin_token set: the token (Authorization: Bearer, or X-SOLLOL-Token), loopback included;
              without a token: a loopback bind only (403 beyond). Model management routes are client
              routes when management_open is set.

Refusals are BadRequest: each way in answers them in the API family's error shape. The cost per request
is a few dictionary lookups, one SHA-256 of the key when keys are set, and one constant-time comparison
when a token is presented; what the settings imply is made again only when a setting changes.
"""

from __future__ import annotations

import hmac
from typing import Mapping, Optional

from ..config import SollolConfig
from ..errors import BadRequest, ClientRefused
from ..request.call import INTERACTIVE
from ..request.tracked import TrackedClients
from .browsers import Browsers
from .clients import MISSING_KEY, UNKNOWN_KEY, ClientKeys, asked_priority, bearer, class_of, given_key
from .roles import CLIENT, OPERATOR, PUBLIC, Caller, Policy

OPERATOR_NAME = "operator"  # the books' name of a client that sent the operator token
AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="sollol"'}
_PUBLIC_GUEST = Caller("public")
_PUBLIC_OPERATOR = Caller("public", operator=True)
_OPERATOR = Caller(OPERATOR_NAME, operator=True)


class Guard:
    def __init__(self, config: SollolConfig, keys: ClientKeys, browsers: Browsers,
                 tracked: TrackedClients) -> None:
        self.config = config
        self.keys = keys
        self.browsers = browsers
        self.tracked = tracked
        self._token_source: Optional[str] = None
        self._token = b""

    def admit(self, policy: Policy, headers: Mapping[str, str], client_host: str) -> Caller:
        """The caller, when the route's policy lets it in; BadRequest (401, 403, 415, 429, 400) otherwise."""
        refusal = self.browsers.refusal(headers, policy.json_body)
        if refusal is not None:
            raise BadRequest(refusal[0], refusal[1])
        access = policy.access
        if access is OPERATOR:
            if not (policy.management and self.config.management_open):
                self.require_operator(headers)
                return _OPERATOR
            access = CLIENT
        if access is CLIENT:
            try:
                return self._client(policy, headers, client_host)
            except ClientRefused as e:
                raise BadRequest(e.status, e.message, e.headers) from None
        assert access is PUBLIC
        return _PUBLIC_OPERATOR if self.is_operator(headers) else _PUBLIC_GUEST

    # operator -----------------------------------------------------------------------------------------
    def _token_bytes(self) -> bytes:
        token = self.config.admin_token
        if token is not self._token_source:
            self._token_source, self._token = token, (token or "").encode("utf-8", "surrogatepass")
        return self._token

    def _matches(self, given: Optional[str]) -> bool:
        if not given:
            return False
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self._token_bytes())

    def is_operator(self, headers: Mapping[str, str]) -> bool:
        """Whether the request would pass an operator route."""
        if self.config.admin_token:
            return self._matches(bearer(headers)) or self._matches(headers.get("x-sollol-token"))
        return self.browsers.loopback

    def refusal(self, what: str = "operator routes") -> BadRequest:
        """What a request without the operator's rights hears."""
        if self.config.admin_token:
            return BadRequest(401, f"this is for the operator ({what}): send 'Authorization: Bearer <admin_token>' "
                                   f"(or X-SOLLOL-Token)", AUTHENTICATE)
        return BadRequest(403, f"this is for the operator ({what}), and the gateway listens beyond loopback without "
                               f"an operator token: set admin_token (or SOLLOL_ADMIN_TOKEN)")

    def require_operator(self, headers: Mapping[str, str], what: str = "operator routes") -> None:
        if not self.is_operator(headers):
            raise self.refusal(what)

    def require_management(self, caller: Caller, what: str) -> None:
        """A management action taken through a client route (an unload on every host): the operator's, unless
        management_open opens it to clients."""
        if not (self.config.management_open or caller.operator):
            raise self.refusal(what)

    def scrape_refusal(self, headers: Mapping[str, str]) -> Optional[tuple[int, str]]:
        """The metrics port's check: the browser rules, and the operator token once one is set (without one
        the port is open, as it always was: bind it where only the scraper reaches it)."""
        refused = self.browsers.refusal(headers, False)
        if refused is not None:
            return refused
        if self.config.admin_token and not self.is_operator(headers):
            return 401, "this is for the operator (metrics): send 'Authorization: Bearer <admin_token>'"
        return None

    # client -------------------------------------------------------------------------------------------
    def _client(self, policy: Policy, headers: Mapping[str, str], client_host: str) -> Caller:
        asked = asked_priority(headers) if policy.inference else None
        if not self.config.api_keys:
            name = self.tracked.name(client_host or "anonymous")
            return Caller(name, asked or INTERACTIVE, self.is_operator(headers), None)
        given = given_key(headers)
        if not given:
            raise ClientRefused(401, MISSING_KEY)
        found = self.keys.find(given)
        if found is None:
            if self.config.admin_token and self._matches(given):
                return Caller(self.tracked.name(OPERATOR_NAME), asked or INTERACTIVE, True, None)
            raise ClientRefused(401, UNKNOWN_KEY)
        key, entry = found
        if policy.inference:
            self.keys.take(key, entry)
        operator = self._matches(headers.get("x-sollol-token")) if self.config.admin_token \
            else self.browsers.loopback
        return Caller(self.tracked.name(entry.name), class_of(entry.priority, asked), operator, entry.name)
