"""Every setting says whether it is live; update_config reports by that, and applies tables in place."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from sollol_core.config import (
    ApiKey,
    CacheSettings,
    HostSettings,
    ModelSettings,
    QueueSettings,
    RoutingWeights,
    SollolConfig,
    declared_live,
    is_live,
)
from sollol_core.control import Control
from sollol_core.wiring import Parts, build

SETTINGS_MODELS: tuple[type[BaseModel], ...] = (SollolConfig, RoutingWeights, HostSettings, CacheSettings,
                                                QueueSettings, ApiKey, ModelSettings)


def control_of(**config: object) -> tuple[Parts, Control]:
    parts = build(SollolConfig.model_validate({"hosts": ["a:1", "b:1"]} | config))
    return parts, Control(parts)


def inner_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The settings model a field holds: itself (cache), or as the values of a dict (host_settings)."""
    annotation = model.model_fields[name].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = getattr(annotation, "__args__", ())
    if len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
        return args[1]
    return None


@pytest.mark.parametrize("model", SETTINGS_MODELS, ids=lambda m: m.__name__)
def test_every_field_declares_whether_it_is_live(model: type[BaseModel]) -> None:
    silent = [name for name in model.model_fields if declared_live(model, name) is None]
    assert not silent, f"{model.__name__}: declare live=True/False with config.setting(...) for {silent}"


@pytest.mark.parametrize("model", SETTINGS_MODELS, ids=lambda m: m.__name__)
def test_a_table_is_live_exactly_when_all_its_keys_are(model: type[BaseModel]) -> None:
    for name in model.model_fields:
        inner = inner_model(model, name)
        if inner is not None:
            keys_live = all(declared_live(inner, key) for key in inner.model_fields)
            assert declared_live(model, name) is keys_live, f"{model.__name__}.{name}"


def test_what_the_issue_found_missing_is_live() -> None:
    for name in ("queue", "default_num_parallel", "host_queue_depth", "cache", "routing_weights", "hosts"):
        assert is_live(name), name
    for name in ("gateway_port", "gateway_host", "executor", "batch_db", "metrics_port", "connect_timeout"):
        assert not is_live(name), name


def test_update_config_reports_live_fields_as_applied_and_the_rest_as_restart_required() -> None:
    parts, control = control_of()
    for name in SollolConfig.model_fields:
        value = getattr(parts.config, name)
        result = control.update_config(**{name: value.model_dump() if isinstance(value, BaseModel) else value})
        expected = {"applied": [name], "restart_required": []} if is_live(name) else \
            {"applied": [], "restart_required": [name]}
        assert result == expected, name


def test_live_slot_settings_apply_at_once() -> None:
    parts, control = control_of()
    assert parts.slots.limit("a:1", "llama3.2") is None  # unlimited
    result = control.update_config(default_num_parallel=2, host_queue_depth=1)
    assert result == {"applied": ["default_num_parallel", "host_queue_depth"], "restart_required": []}
    assert control.num_parallel("a:1") == 2 and parts.slots.limit("a:1", "llama3.2") == 3


def test_update_config_cache_reaches_the_shadow_in_place() -> None:
    parts, control = control_of()
    held = parts.shadow.settings
    assert held is parts.config.cache
    result = control.update_config(cache={"active_s": 42.0, "load_epsilon": 0.5})
    assert result == {"applied": ["cache"], "restart_required": []}
    assert parts.shadow.settings is held is parts.config.cache  # one object: shadow and placement agree
    assert (held.active_s, held.load_epsilon) == (42.0, 0.5)
    assert held.block_chars == CacheSettings().block_chars  # a partial table changes only what it names
    control.update_config(cache=CacheSettings(enabled=False))  # a whole table: every key, still in place
    assert parts.shadow.settings is held and held.enabled is False and held.active_s == CacheSettings().active_s
    with pytest.raises(ValueError):
        control.update_config(cache={"active_s": 1.0}, max_retries=-1)  # all or nothing
    assert held.active_s == CacheSettings().active_s


def test_update_config_queue_and_weights_in_place() -> None:
    parts, control = control_of()
    queue, weights = parts.config.queue, parts.config.routing_weights
    control.update_config(queue={"max_depth": 5}, routing_weights={"latency": 0.7})
    assert parts.config.queue is queue and queue.max_depth == 5 and queue.batch_share == QueueSettings().batch_share
    assert parts.config.routing_weights is weights and weights.latency == 0.7
    assert parts.router.weights.latency == 0.7 and parts.router.weights.cpu_load == RoutingWeights().cpu_load
    with pytest.raises(ValueError):
        control.update_config(queue={"max_depth": 0})
    assert queue.max_depth == 5


def test_update_config_host_settings_reach_the_registry_and_the_saved_config() -> None:
    parts, control = control_of()
    result = control.update_config(host_settings={"a:1": {"priority": 2, "weight": 3.0, "num_parallel": 4}})
    assert result == {"applied": ["host_settings"], "restart_required": []}
    host = parts.registry.get("a:1")
    assert (host.priority, host.weight, control.num_parallel("a:1")) == (2, 3.0, 4)
    saved = control.running_config().host_settings["a:1"]
    assert (saved.priority, saved.weight, saved.num_parallel) == (2, 3.0, 4)
