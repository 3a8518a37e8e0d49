"""The health bookkeeping of B5, straight against the database (no network)."""

from __future__ import annotations

import dataclasses

import pytest
from django.utils import timezone

from servers.comfyui import QueueItem, QueueState, SystemStats
from servers.models import FailureKind, FailureRecord, Health, Server, ServerState
from servers.monitor import state
from servers.monitor.checks import CheckOutcome
from servers.monitor.tunables import Tunables
from tests.factories import make_server

pytestmark = pytest.mark.django_db

STATS = SystemStats.from_json(
    {
        "system": {"comfyui_version": "0.3.64", "python_version": "3.12"},
        "devices": [{"name": "cuda:0 A100", "type": "cuda", "vram_total": 80, "vram_free": 60}],
    }
)
THREE = dataclasses.replace(Tunables.defaults(), failures_before_unhealthy=3)


def _queue(running: int, pending: int, *, ours: int = 0) -> QueueState:
    """`ours` of the pending items carry our monitor's client id."""

    def item(n: int) -> QueueItem:
        extra = {"client_id": "ours"} if n >= running + pending - ours else {}
        return QueueItem.from_json([n, f"p{n}", {}, extra, []])

    return QueueState(
        running=tuple(item(n) for n in range(running)),
        pending=tuple(item(n) for n in range(running, running + pending)),
    )


def ok(queue: QueueState | None = None) -> CheckOutcome:
    return CheckOutcome(
        stats=STATS,
        health_error=None,
        response_ms=12.0,
        queue=queue,
        queue_error=None if queue else "ServerError: HTTP 500",
    )


@pytest.fixture
def server() -> Server:
    return make_server("gpu-1", base_url="http://127.0.0.1:1")


def _state(server: Server) -> ServerState:
    return ServerState.objects.get(server=server)


def test_only_the_nth_consecutive_failure_marks_unhealthy_and_releases_the_lock(server):
    ServerState.objects.filter(server=server).update(health=Health.HEALTHY, last_affinity_key="wf")
    transitions = [state.record_failure(server.pk, "refused", THREE) for _ in range(4)]
    assert [t.marked_unhealthy for t in transitions] == [False, False, True, False]
    assert [t.after for t in transitions[:2]] == [Health.HEALTHY, Health.HEALTHY]
    records = list(FailureRecord.objects.filter(server=server).order_by("at", "pk"))
    assert [r.marked_unhealthy for r in records] == [False, False, True, False]
    current = _state(server)
    assert current.health == Health.UNHEALTHY
    assert current.unhealthy_since == records[2].at
    assert current.last_affinity_key == ""
    assert current.consecutive_failures == 4


def test_a_success_below_the_threshold_resets_the_count(server):
    state.record_failure(server.pk, "refused", THREE)
    state.record_failure(server.pk, "refused", THREE)
    state.record_success(server.pk, ok(_queue(1, 2)), next_check_at=timezone.now())
    assert state.record_failure(server.pk, "refused", THREE).consecutive_failures == 1
    assert not FailureRecord.objects.filter(marked_unhealthy=True).exists()


def test_readmission_closes_every_open_record_and_writes_stats_and_load(server):
    for _ in range(3):
        state.record_failure(server.pk, "refused", THREE)
    state.record_stream_drop(server.pk, "event stream lost")
    transition = state.record_success(server.pk, ok(_queue(1, 2)), next_check_at=timezone.now())
    assert transition.readmitted
    assert not FailureRecord.objects.filter(server=server, recovered_at__isnull=True).exists()
    current = _state(server)
    assert (current.health, current.unhealthy_since, current.consecutive_failures) == (
        Health.HEALTHY,
        None,
        0,
    )
    assert (current.queue_running, current.queue_pending, current.queue_source) == (1, 2, "queue")
    assert (current.comfyui_version, current.device_name) == ("0.3.64", "cuda:0 A100")
    assert (current.vram_total, current.vram_free) == (80, 60)


def test_queue_fallback_takes_the_load_from_the_event_stream_status(server):
    state.record_success(server.pk, ok(None), next_check_at=timezone.now(), queue_remaining=4)
    current = _state(server)
    assert (current.queue_running, current.queue_pending) == (1, 3)
    assert current.queue_source == "system_stats"
    assert current.health == Health.HEALTHY
    record = FailureRecord.objects.get(server=server)
    assert record.kind == FailureKind.QUEUE
    assert record.recovered_at is None
    state.record_success(server.pk, ok(_queue(0, 0)), next_check_at=timezone.now())
    record.refresh_from_db()
    assert record.recovered_at is not None


def test_a_deleted_server_is_ignored_not_an_error(server):
    server_id = server.pk
    server.delete()
    assert state.record_failure(server_id, "refused", THREE).after == Health.UNKNOWN
    assert state.record_success(server_id, ok(None), next_check_at=timezone.now()).after == (
        Health.UNKNOWN
    )
    state.record_stream_drop(server_id, "gone")
    assert not FailureRecord.objects.exists()


def test_our_own_prompts_are_not_counted_as_the_servers_queue(server):
    state.record_success(
        server.pk, ok(_queue(1, 3, ours=2)), next_check_at=timezone.now(), own_client_id="ours"
    )
    assert (_state(server).queue_running, _state(server).queue_pending) == (1, 1)
