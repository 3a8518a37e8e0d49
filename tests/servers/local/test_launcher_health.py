"""/healthz and the launcher: needed once local instances exist, and then reported."""

from __future__ import annotations

import os
import uuid

import pytest
from django.core.cache import cache

from servers.local import heartbeat

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def own_key(monkeypatch):
    """Launchers of other test runs beat on the shared Redis: this test's own key."""
    monkeypatch.setattr(heartbeat, "KEY", f"test:{uuid.uuid4().hex}:launcher")
    yield
    cache.delete(heartbeat.KEY)


def test_no_local_instance_needs_no_launcher():
    check = heartbeat.check_launcher()
    assert check.ok
    assert check.detail == "no local instances"


def test_local_instances_without_a_launcher_are_a_failing_component(make_instance):
    make_instance()
    check = heartbeat.check_launcher()
    assert not check.ok
    assert check.detail == "LauncherMissing: no launcher heartbeat (1 local instance(s))"


def test_a_beating_launcher_is_reported_with_its_processes(make_instance):
    make_instance()
    heartbeat.write_heartbeat(children=1, interval=0.5)
    check = heartbeat.check_launcher()
    assert check.ok
    assert check.extra == {"children": 1}
    heartbeat.clear_heartbeat()
    assert not heartbeat.check_launcher().ok


def test_the_launcher_beats_while_it_runs_and_clears_its_beat_when_it_stops(launcher):
    seen = []

    def stop() -> bool:  # asked before every tick: what /healthz would read then
        seen.append(cache.get(heartbeat.KEY))
        return len(seen) > 3

    launcher.run(stop)
    beats = [beat for beat in seen if beat is not None]
    assert beats
    assert beats[-1]["pid"] == os.getpid()
    assert cache.get(heartbeat.KEY) is None  # stopped: the beat is gone at once
