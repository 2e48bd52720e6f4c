"""What the batch side gets from the rest of the core: narrow, typed parts, never the service object."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from ..cluster.hosts import HostRegistry
from ..cluster.slots import SlotTable
from ..config import SollolConfig
from ..observability.components import ComponentBoard
from ..request.books import Books
from ..request.call import Call
from ..request.lease import Lease
from ..upstream.inloop import AsyncExecutor


class Admission(Protocol):
    """The gateway queue, as a batch chunk waits in it for a slot (request.admission.GatewayQueue)."""

    async def admit(self, call: Call, exclude: frozenset[str]) -> Optional[Lease]: ...


@dataclass(frozen=True)
class BatchDeps:
    """The parts the batch queue, the autobatch loop and Dask use."""

    config: SollolConfig
    registry: HostRegistry
    queue: Admission
    books: Books
    slots: SlotTable
    executor: AsyncExecutor  # refreshes a host's model list (in the core loop)
    components: ComponentBoard  # the "batch" and "dask" components
    running: Callable[[], bool]  # whether the gateway serves
    loop: Callable[[], asyncio.AbstractEventLoop]  # the core loop (raises before start)
