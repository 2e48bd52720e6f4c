"""Every exception of sollol_core, in one tree (the simulator, sollol_core.sim, keeps its own).

    SollolError                 the base: `except SollolError` catches whatever SOLLOL raises on purpose
    ├── ConfigError             a setting or key that cannot be used; the message names it and its source
    ├── StartupError            (also a RuntimeError) the gateway could not start: port in use, bad address
    ├── SpawnedReimport         (also a RuntimeError) SOLLOL created by a main module a Dask worker re-imports
    ├── UnknownHost             (also a KeyError) the registry has no host of that address
    ├── NoHostForModel          every host's model list is known and none has the model (answered 404)
    ├── UpstreamFailure         a host could not be reached, broke off, or did not answer in time
    │   └── ExecutorFailure     the executor could not carry the call (a Ray actor died): the host is not blamed
    ├── BodySourceError         the client's body broke off mid-upload: not the hosts' fault
    ├── Rejected                the gateway queue refuses a request: status, reason, Retry-After
    ├── ClientGone              the client went away while its request waited in the queue
    ├── ClientRefused           the client guard says no: 401 (key), 429 (rate), 400 (priority header)
    ├── BadRequest              answered as status and message, in the error shape of the route's API family
    ├── BatchUnavailable        the batch database cannot be used (the message says why)
    ├── BatchQuotaExceeded      a client's queued batch documents would go over its quota (answered 429)
    └── DaskUnavailable         Dask could not be started or reached

The bottom layer: nothing here imports the rest of sollol_core.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

__all__ = [
    "BadRequest",
    "BatchQuotaExceeded",
    "BatchUnavailable",
    "BodySourceError",
    "ClientGone",
    "ClientRefused",
    "ConfigError",
    "DaskUnavailable",
    "ExecutorFailure",
    "NoHostForModel",
    "Rejected",
    "SollolError",
    "SpawnedReimport",
    "StartupError",
    "UnknownHost",
    "UpstreamFailure",
]


class SollolError(Exception):
    """The base of every exception SOLLOL raises on purpose."""


# configuration and start -----------------------------------------------------------------------------
class ConfigError(SollolError):
    """A configuration value or key that cannot be used; the message names the key and where it came from."""


class StartupError(SollolError, RuntimeError):
    """The gateway could not start (port in use, bad address); the message says what to do."""


class SpawnedReimport(SollolError, RuntimeError):
    """SOLLOL is being created by the module-level code of a main module that a spawned child re-imports."""


# cluster -------------------------------------------------------------------------------------------
class UnknownHost(SollolError, KeyError):
    """The registry has no host of that address."""


class NoHostForModel(SollolError):
    """Every host's model list is known and none has the model (the gateway answers 404 like Ollama)."""


# upstream calls ------------------------------------------------------------------------------------
class UpstreamFailure(SollolError):
    """The host could not be reached, or broke off, or did not answer in time."""


class ExecutorFailure(UpstreamFailure):
    """The executor could not carry the call (a Ray actor died): retried like any failure, but the host
    is not blamed for it."""


class BodySourceError(SollolError):
    """The client's body broke off (it went away mid-upload): not the hosts' fault."""


# the request path ----------------------------------------------------------------------------------
class Rejected(SollolError):
    """The gateway queue refuses the request: answered with `status` and, when known, Retry-After."""

    def __init__(self, status: int, message: str, reason: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason  # queue_full / timeout / shed / wait_too_long
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class ClientGone(SollolError):
    """The client went away while its request waited."""


# the HTTP surface ----------------------------------------------------------------------------------
class ClientRefused(SollolError):
    """401 (no or wrong key), 429 (over its rate) or 400 (a bad priority header)."""

    def __init__(self, status: int, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, int(self.retry_after + 0.999)))
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="sollol"'
        return headers


class BadRequest(SollolError):
    """Answered as `status` with `message`, in the error shape of the route's API family."""

    def __init__(self, status: int, message: str, headers: Optional[Mapping[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers) if headers else None


# batch ---------------------------------------------------------------------------------------------
class BatchUnavailable(SollolError):
    """The batch database cannot be used (the message says why)."""


class BatchQuotaExceeded(SollolError):
    """A job would take its client over its quota of documents waiting or in progress."""

    def __init__(self, queued: int, adding: int, quota: int) -> None:
        super().__init__(f"{queued} documents of this client wait or are in progress; {adding} more would go "
                         f"over its quota of {quota}: retry once some have finished")
        self.queued = queued
        self.adding = adding
        self.quota = quota


class DaskUnavailable(SollolError):
    """Dask could not be started or reached; the message says why."""
