"""Pure parts of the monitor: the reconcile plan, the capability cache, the work hooks."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from servers.comfyui import Disconnected, ExecutionStart, Reconnected, Status, SystemStats
from servers.monitor import work
from servers.monitor.capabilities import CapabilityCache, restart_signature
from servers.monitor.registry import ServerSpec, plan
from servers.monitor.work import WorkHooks, is_execution_event
from tests.clocks import FakeClock


def spec(sid: int, url: str = "http://a:1", name: str = "s", **headers: str) -> ServerSpec:
    return ServerSpec(
        id=sid, name=name, base_url=url, client_id=f"c-{sid}", headers=tuple(headers.items())
    )


def test_plan_starts_new_servers_and_stops_gone_ones():
    result = plan({1: spec(1), 2: spec(2)}, {2: spec(2), 3: spec(3)})
    assert result.start == (spec(3),)
    assert result.stop == (1,)
    assert result.rename == ()


def test_plan_restarts_a_server_whose_url_or_headers_changed():
    moved = spec(1, "http://b:2")
    authed = spec(2, Authorization="Bearer x")
    result = plan({1: spec(1), 2: spec(2)}, {1: moved, 2: authed})
    assert set(result.start) == {moved, authed}
    assert result.stop == (1, 2)


def test_plan_renames_without_a_restart():
    result = plan({1: spec(1)}, {1: spec(1, name="new")})
    assert result.start == ()
    assert result.stop == ()
    assert result.rename == (spec(1, name="new"),)


def _stats(version: str = "0.3.64", vram: int = 8) -> SystemStats:
    raw = {
        "system": {"comfyui_version": version, "python_version": "3.12", "argv": ["main.py"]},
        "devices": [{"name": "cuda:0", "type": "cuda", "vram_total": vram, "vram_free": 1}],
    }
    return SystemStats.from_json(raw)


def test_capability_cache_counts_hits_until_the_ttl_runs_out():
    clock = FakeClock(0.0)
    cache = CapabilityCache(clock)
    assert not cache.lookup(1, ttl=10)
    cache.stored(1)
    clock.now = 5
    assert cache.lookup(1, ttl=10)
    assert cache.lookup(1, ttl=10)
    clock.now = 11
    assert not cache.lookup(1, ttl=10)
    assert cache.counts(1) == {"hits": 2, "misses": 2, "hit_rate": 0.5}


def test_capability_cache_is_invalidated_by_a_restart_or_a_new_signature():
    cache = CapabilityCache(FakeClock(0.0))
    assert not cache.lookup(1, ttl=60, stats=_stats())
    cache.stored(1)
    assert cache.lookup(1, ttl=60, stats=_stats(vram=8))
    assert not cache.lookup(1, ttl=60, stats=_stats(version="0.3.65"))  # upgraded
    cache.stored(1)
    cache.invalidate(1)  # e.g. the stream reconnected
    assert not cache.lookup(1, ttl=60)
    assert restart_signature(_stats()) == restart_signature(_stats())


def test_execution_events_are_prompt_events_and_connection_changes():
    assert is_execution_event(ExecutionStart(prompt_id="p"))
    assert is_execution_event(Reconnected(url="ws://x", downtime=1.0, reconnects=1))
    assert is_execution_event(Disconnected(reason="gone", retry_in=1.0))
    assert not is_execution_event(Status(queue_remaining=0))


class CustomHooks(WorkHooks):
    pass


def test_each_monitor_gets_fresh_hooks_from_the_registered_factory(monkeypatch):
    monkeypatch.setattr(work, "_factory", None)
    work.register(CustomHooks)
    first, second = work.new_hooks(), work.new_hooks()
    assert isinstance(first, CustomHooks)
    assert first is not second


def test_the_monitor_refuses_to_start_with_no_hooks_registered(monkeypatch):
    monkeypatch.setattr(work, "_factory", None)
    with pytest.raises(ImproperlyConfigured):
        work.new_hooks()
