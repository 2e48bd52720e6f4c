"""What a web browser may do to the gateway: Host and Origin checks, CORS, and the content types JSON routes
take.

Loopback is no defence against a browser. A page on any site can send a "simple" request (a form post, a
text/plain fetch) to http://127.0.0.1:8000 without a CORS preflight, and a page whose name rebinds to
127.0.0.1 can even read the answers. So, as Ollama does (its allowedHostsMiddleware and OLLAMA_ORIGINS):

    Host      on a loopback bind, a request must name the gateway by a local name: a loopback, private or
              unspecified address, localhost (and *.localhost), *.local, *.internal, this machine's name,
              or a name in `allowed_hosts` ('.example.com' for a domain and its subdomains, '*' any);
              otherwise 403
    Origin    a request that carries an Origin other than its own (scheme and Host) is refused (403)
              unless the origin is a loopback one (http or https on localhost, 127.0.0.1, [::1]) or listed
              in `allowed_origins` ('https://*.example.com' patterns, '*' any); an allowed one gets
              Access-Control-Allow-Origin on its answer
    preflight an OPTIONS request with Origin and Access-Control-Request-Method is answered 204 with the
              CORS headers for an allowed origin, 403 otherwise
    JSON      a JSON route takes application/json, or no Content-Type at all (clients that send none):
              text/plain, forms and multipart bodies are what a browser sends without asking first

Verdicts are kept per Host and per Origin value (bounded), made afresh when a setting changes (they are live).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from typing import Mapping, Optional
from urllib.parse import urlsplit

from ..config import SollolConfig, is_loopback_host

MAX_REMEMBERED = 256  # Host and Origin values whose verdict is kept
LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
PREFLIGHT_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
PREFLIGHT_HEADERS = ("authorization, content-type, x-api-key, anthropic-version, anthropic-beta, "
                     "openai-organization, openai-project, x-sollol-priority, x-sollol-session, x-sollol-host, "
                     "x-sollol-token")
_HEADER_LIST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_, ")
_QUICK_HOSTS = frozenset(("127.0.0.1", "localhost", "[::1]"))


def _split_host(value: str) -> str:
    """The name of a Host header (without its port), lower case, without a trailing dot."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit():
        value = name
    return value.rstrip(".")


def _is_local_address(name: str) -> bool:
    """An IP literal that only a local or private network reaches (a rebinding page cannot send it as its
    own Host: the browser sends the page's name)."""
    try:
        ip = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_unspecified or ip.is_link_local


def json_content_type(value: Optional[str]) -> bool:
    """application/json (any parameters), or no content type at all."""
    if not value or value == "application/json":
        return True
    media = value.partition(";")[0].strip().lower()
    return media in ("application/json", "")


class Browsers:
    """The browser rules above, for one gateway's config (read live)."""

    def __init__(self, config: SollolConfig, hostname: Optional[str] = None) -> None:
        self.config = config
        self.hostname = (hostname if hostname is not None else socket.gethostname()).lower().rstrip(".")
        self._bind: Optional[str] = None
        self._loopback = False
        self._hosts_source: Optional[list[str]] = None
        self._origins_source: Optional[list[str]] = None
        self._host_verdicts: dict[str, bool] = {}
        self._origin_verdicts: dict[str, bool] = {}
        self._allowed_names: frozenset[str] = frozenset()
        self._allowed_suffixes: tuple[str, ...] = ()
        self._any_host = False
        self._allowed_origins: frozenset[str] = frozenset()
        self._origin_patterns: tuple[str, ...] = ()
        self._any_origin = False

    # what the settings say (made again when they change) ------------------------------------------
    @property
    def loopback(self) -> bool:
        """Whether the gateway is bound to loopback only (gateway_host, read when it changes)."""
        bind = self.config.gateway_host
        if bind is not self._bind:
            self._bind, self._loopback = bind, is_loopback_host(bind)
            self._host_verdicts = {}
        return self._loopback

    def _hosts(self) -> dict[str, bool]:
        source = self.config.allowed_hosts
        if source is not self._hosts_source:
            names: set[str] = set()
            suffixes: list[str] = []
            for entry in source:
                e = entry.strip().lower()
                if e == "*":
                    continue
                if e.startswith("."):
                    suffixes.append(e)
                    names.add(e[1:])
                elif e:
                    names.add(_split_host(e))
            self._any_host = any(entry.strip() == "*" for entry in source)
            self._allowed_names, self._allowed_suffixes = frozenset(names), tuple(suffixes)
            self._hosts_source, self._host_verdicts = source, {}
        return self._host_verdicts

    def _origins(self) -> dict[str, bool]:
        source = self.config.allowed_origins
        if source is not self._origins_source:
            exact: set[str] = set()
            patterns: list[str] = []
            for entry in source:
                e = entry.strip().lower().rstrip("/")
                if e == "*":
                    continue
                if "*" in e:
                    patterns.append(e)
                elif e:
                    exact.add(e)
            self._any_origin = any(entry.strip() == "*" for entry in source)
            self._allowed_origins, self._origin_patterns = frozenset(exact), tuple(patterns)
            self._origins_source, self._origin_verdicts = source, {}
        return self._origin_verdicts

    # Host ---------------------------------------------------------------------------------------------
    def host_allowed(self, host: Optional[str]) -> bool:
        """Whether a request naming `host` (its Host header) may be served."""
        if not self.loopback or not host or host in _QUICK_HOSTS:
            return True
        verdicts = self._hosts()
        verdict = verdicts.get(host)
        if verdict is None:
            verdict = self._judge_host(host)
            if len(verdicts) < MAX_REMEMBERED:
                verdicts[host] = verdict
        return verdict

    def _judge_host(self, host: str) -> bool:
        name = _split_host(host)
        if not name or name == "localhost" or name.endswith(LOCAL_SUFFIXES) or _is_local_address(name):
            return True
        if name == self.hostname or name == self.hostname.split(".", 1)[0]:
            return True
        return self._any_host or name in self._allowed_names or name.endswith(self._allowed_suffixes)

    # Origin -------------------------------------------------------------------------------------------
    def origin_allowed(self, origin: str) -> bool:
        """Whether a cross-origin request from `origin` may be served (and read by its page)."""
        verdicts = self._origins()
        verdict = verdicts.get(origin)
        if verdict is None:
            verdict = self._judge_origin(origin)
            if len(verdicts) < MAX_REMEMBERED:
                verdicts[origin] = verdict
        return verdict

    def _judge_origin(self, origin: str) -> bool:
        normal = origin.strip().lower().rstrip("/")
        if self._any_origin or normal in self._allowed_origins:
            return True
        if any(fnmatch.fnmatchcase(normal, p) for p in self._origin_patterns):
            return True
        try:
            parts = urlsplit(normal)
        except ValueError:
            return False
        return parts.scheme in ("http", "https") and bool(parts.hostname) and is_loopback_host(parts.hostname or "") \
            and not parts.path and not parts.query and not parts.username

    @staticmethod
    def same_origin(origin: str, host: Optional[str]) -> bool:
        """The request comes from a page of the gateway itself (its /docs)."""
        if not host or not origin.endswith(host):
            return False
        scheme = origin[: len(origin) - len(host)]
        return scheme == "http://" or scheme == "https://"

    # a request ----------------------------------------------------------------------------------------
    def refusal(self, headers: Mapping[str, str], json_body: bool) -> Optional[tuple[int, str]]:
        """(status, message) when a browser rule refuses the request; None when it may go on."""
        host = headers.get("host")
        if not self.host_allowed(host):
            return 403, (f"Host {(host or '')[:100]!r} is not a name of this gateway: on a loopback bind only "
                         f"local names are served (add it to allowed_hosts to serve it)")
        origin = headers.get("origin")
        if origin is not None and not self.same_origin(origin, host) and not self.origin_allowed(origin):
            return 403, (f"cross-origin request from {origin[:100]!r} refused: add the origin to "
                         f"allowed_origins to let its pages call the gateway")
        if json_body:
            content_type = headers.get("content-type")
            if content_type is not None and not json_content_type(content_type):
                return 415, (f"send the body as JSON (Content-Type: application/json), or without a "
                             f"Content-Type; got {content_type[:60]!r}")
        return None

    def cors_headers(self, headers: Mapping[str, str]) -> Optional[dict[str, str]]:
        """The CORS headers of the answer to an allowed cross-origin request; None for any other."""
        origin = headers.get("origin")
        if origin is None or self.same_origin(origin, headers.get("host")) or not self.origin_allowed(origin):
            return None
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    @staticmethod
    def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
        return method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers

    def preflight(self, headers: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
        """(status, headers, refusal message or '') of a CORS preflight."""
        host = headers.get("host")
        origin = headers.get("origin", "")
        if not self.host_allowed(host):
            return 403, {}, f"Host {(host or '')[:100]!r} is not a name of this gateway"
        if not (self.same_origin(origin, host) or self.origin_allowed(origin)):
            return 403, {}, f"origin {origin[:100]!r} is not in allowed_origins"
        asked = headers.get("access-control-request-headers", "")
        allow_headers = asked if asked and len(asked) <= 1000 and set(asked) <= _HEADER_LIST_CHARS \
            else PREFLIGHT_HEADERS
        return 204, {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": PREFLIGHT_METHODS,
                     "Access-Control-Allow-Headers": allow_headers, "Access-Control-Max-Age": "600",
                     "Vary": "Origin"}, ""
