"""Control: what an operator does to a SOLLOL (hosts, drain, priorities, weights, slots, strategy, batch),
and its config: update_config (live where each field says so), the running config, saving it.

Safe from any thread: the registry and the router take their own locks, and what has to run in the core loop
(learning a new host's models) is handed to it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ValidationError

from .cluster.adaptive import refresh_host
from .cluster.health import check_all
from .cluster.hosts import HostChangeKind, HostState
from .config import HostSettings, RoutingWeights, SollolConfig, is_live, normalize_host, save_config, validation_message
from .wiring import Parts


def assign_in_place(target: BaseModel, source: BaseModel) -> None:
    """Copy every field of `source` (already validated) into `target`, so whoever holds `target` reads the
    new values: the shadow holds config.cache, placement and the gateway read it through the config."""
    for name in type(target).model_fields:
        value = getattr(source, name)
        if getattr(target, name) != value:
            setattr(target, name, value)


class Control:
    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    # hosts ----------------------------------------------------------------------------------------
    def add_host(self, address: str, *, priority: int = 0, weight: float = 1.0, label: str = "") -> str:
        """Register a host (normalised: a bare host gets :11434); returns its address."""
        p = self.parts
        address = normalize_host(address)
        p.registry.add(address, priority=priority, weight=weight, label=label)
        if address not in p.config.hosts:
            p.config.hosts = [*p.config.hosts, address]
        loop = p.state.loop
        if loop is not None and p.state.running:
            # learn its models and health now rather than at the next round
            asyncio.run_coroutine_threadsafe(self._refresh_new_host(address), loop)
        return address

    async def _refresh_new_host(self, address: str) -> None:
        await check_all(self.parts.in_loop, self.parts.registry)
        await refresh_host(self.parts.in_loop, self.parts.registry, address)

    def remove_host(self, address: str) -> None:
        p = self.parts
        address = normalize_host(address)
        p.registry.remove(address)
        if address in p.config.hosts:
            p.config.hosts = [h for h in p.config.hosts if h != address]

    def drain_host(self, address: str) -> None:
        self.parts.registry.drain(normalize_host(address))

    def undrain_host(self, address: str) -> None:
        self.parts.registry.undrain(normalize_host(address))

    def toggle_drain(self, address: str) -> str:
        """Drain a host, or undrain a draining one; returns the new state."""
        registry = self.parts.registry
        if registry.get(normalize_host(address)).state == HostState.DRAINING:
            self.undrain_host(address)
        else:
            self.drain_host(address)
        return registry.get(normalize_host(address)).state.value

    def set_priority(self, address: str, priority: int) -> None:
        self.parts.registry.set_priority(normalize_host(address), priority)

    def set_weight(self, address: str, weight: float) -> None:
        self.parts.registry.set_weight(normalize_host(address), weight)

    def num_parallel(self, address: str) -> Optional[int]:
        """The host's slots per loaded model: its own num_parallel, else default_num_parallel (None: unlimited)."""
        return self.parts.slot_limits(address)

    def set_num_parallel(self, address: str, slots: Optional[int]) -> None:
        """Set the host's slots (its OLLAMA_NUM_PARALLEL); None goes back to default_num_parallel. Live."""
        p = self.parts
        address = normalize_host(address)
        host = p.registry.get(address)  # UnknownHost for a host that is not registered
        settings = dict(p.config.host_settings)
        current = settings.get(address) or HostSettings(priority=host.priority, weight=host.weight)
        settings[address] = current.model_copy(update={"num_parallel": HostSettings(num_parallel=slots).num_parallel})
        p.config.host_settings = settings
        p.registry.touch(address, HostChangeKind.SLOTS)

    # routing --------------------------------------------------------------------------------------
    def set_strategy(self, name: str) -> None:
        self.parts.router.set_strategy(name)
        self.parts.config.routing_strategy = name  # type: ignore[assignment]  # the router refused a bad name

    def set_weights(self, **weights: float) -> RoutingWeights:
        """Change some weights (validated as a whole: all or nothing); returns the weights now in force."""
        new = self.parts.router.set_weights(**weights)  # the router swaps them in at once
        assign_in_place(self.parts.config.routing_weights, new)
        return new

    # batch and the demo ---------------------------------------------------------------------------
    def trigger_batch(self) -> dict[str, Any]:
        """Start a batch of queued documents now (the dashboard's `b`); safe from any thread."""
        return self.parts.batch.trigger()

    def toggle_sim_clients(self) -> Optional[bool]:
        """Start or stop the demo's simulated clients; their new state, or None when there are none."""
        clients = self.parts.sim_clients
        if clients is None:
            return None
        if clients.running:
            clients.stop()
        else:
            clients.start()
        return bool(clients.running)

    # config ---------------------------------------------------------------------------------------
    def update_config(self, **changes: Any) -> dict[str, list[str]]:
        """Apply changes; returns {"applied": [...], "restart_required": [...]} by what each field declares
        (config.setting's `live`). Validated as a whole first: a ValueError changes nothing.

        A table (routing_weights, cache, queue) given as a mapping changes only the keys it names, and is
        applied in place: whoever holds config.cache or config.queue sees the new values."""
        config = self.parts.config
        current = config.model_dump()
        changes = {key: current[key] | dict(value)
                   if isinstance(getattr(config, key, None), BaseModel) and isinstance(value, Mapping) else value
                   for key, value in changes.items()}
        try:
            validated = SollolConfig.model_validate(current | changes)  # all or nothing
        except ValidationError as e:  # worded without the values of secrets, or the keys themselves
            raise ValueError(validation_message(e, current | changes)) from None
        applied: list[str] = []
        restart: list[str] = []
        for key in changes:
            self._apply(key, getattr(validated, key))
            (applied if is_live(key) else restart).append(key)
        return {"applied": applied, "restart_required": restart}

    def _apply(self, key: str, value: Any) -> None:
        p = self.parts
        if key == "routing_strategy":
            self.set_strategy(value)
        elif key == "routing_weights":
            self.set_weights(**value.model_dump())
        elif key == "hosts":
            for address in value:
                if address not in p.registry:
                    self.add_host(address)
            for address in p.registry.addresses():
                if address not in value:
                    self.remove_host(address)
        elif key == "host_settings":
            self._apply_host_settings(value)
        elif isinstance(value, BaseModel):  # cache, queue: the objects the parts hold
            assign_in_place(getattr(p.config, key), value)
        else:
            setattr(p.config, key, value)

    def _apply_host_settings(self, settings: dict[str, HostSettings]) -> None:
        """Slots are read from the config on every use; priority and weight live in the registry, so the
        hosts the table names get theirs (so running_config, and a save, keep them)."""
        p = self.parts
        before = p.config.host_settings
        p.config.host_settings = settings
        for address, hs in settings.items():
            if address not in p.registry:
                continue
            host = p.registry.get(address)
            if host.priority != hs.priority:
                p.registry.set_priority(address, hs.priority)
            if host.weight != hs.weight:
                p.registry.set_weight(address, hs.weight)
            old = before.get(address)
            if (old.num_parallel if old else None) != hs.num_parallel:
                p.registry.touch(address, HostChangeKind.SLOTS)

    def running_config(self) -> SollolConfig:
        """The config as it runs now: the registry's hosts with their priorities and weights, and the live
        strategy and weights. Simulated hosts (--demo) are left out: their ports die with the process."""
        p = self.parts
        cfg = p.config.model_copy(deep=True)
        cfg.routing_strategy = p.router.strategy_name  # type: ignore[assignment]  # a name the router took
        cfg.routing_weights = p.router.weights.model_copy()
        real = [h for h in p.registry.hosts() if not h.label.startswith("simulated")]
        cfg.hosts = [h.address for h in real]
        cfg.hosts_file = None
        slots = {a: hs.num_parallel for a, hs in p.config.host_settings.items()}
        cfg.host_settings = {h.address: HostSettings(priority=h.priority, weight=h.weight,
                                                     num_parallel=slots.get(h.address))
                             for h in real if (h.priority, h.weight, slots.get(h.address)) != (0, 1.0, None)}
        return cfg

    def save_config(self, path: Optional[str | Path] = None) -> tuple[Path, Optional[Path]]:
        """Write the running config as TOML (previous file kept as .bak). Returns (path, backup)."""
        target = Path(path) if path else (self.parts.config_path or Path.cwd() / "sollol.toml")
        backup = save_config(self.running_config(), target)
        return target, backup
