"""`/metrics`: who may scrape it, and the figures it gives for a state built here."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from servers.monitor import heartbeat
from tasks.models import Priority, Status
from tests.factories import make_server, make_task, make_team, make_user

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-scraper-token"
ELSEWHERE = "203.0.113.9"  # TEST-NET-3: never an allowed network by default


@pytest.fixture
def token(settings):
    settings.COMFYWEB_METRICS_TOKEN = TOKEN


@pytest.fixture
def monitors():
    heartbeat.redis_client().delete(heartbeat.KEY)
    heartbeat.store_beat(heartbeat.beat_value("mon-a", servers=2, interval=10, leases=2))
    heartbeat.store_beat(heartbeat.beat_value("mon-b", servers=1, interval=10))
    yield
    heartbeat.redis_client().delete(heartbeat.KEY)


def scrape(client, **headers) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed by prometheus_client's own parser."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def by_label(samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (n, labels), value in samples.items() if n == name}


def test_loopback_scrapes_without_a_token_by_default(client):
    assert client.get("/metrics").status_code == 200


def test_a_caller_from_elsewhere_is_refused_when_no_token_is_set(client):
    response = client.get("/metrics", REMOTE_ADDR=ELSEWHERE)
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_denied"


def test_a_signed_in_user_from_elsewhere_is_refused_too(client):
    client.force_login(make_user(staff=True))
    assert client.get("/metrics", REMOTE_ADDR=ELSEWHERE).status_code == 403


def test_a_caller_from_elsewhere_needs_the_token_once_one_is_set(client, token):
    response = client.get("/metrics", REMOTE_ADDR=ELSEWHERE)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["type"] == "not_authenticated"
    granted = client.get("/metrics", REMOTE_ADDR=ELSEWHERE, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert granted.status_code == 200


def test_a_wrong_token_is_refused_even_from_loopback(client, token):
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert response.status_code == 401


@pytest.mark.parametrize("header", ["HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP"])
def test_a_request_forwarded_by_a_proxy_on_loopback_is_not_let_in_by_its_address(
    client, token, header
):
    # A proxy on the same machine connects from loopback on behalf of anyone.
    response = client.get("/metrics", **{header: ELSEWHERE})
    assert response.status_code == 401
    granted = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **{header: ELSEWHERE})
    assert granted.status_code == 200


def test_a_token_is_refused_when_none_is_configured(client):
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 401


def test_allowed_networks_come_from_the_setting(client, settings):
    import ipaddress

    settings.COMFYWEB_METRICS_NETWORKS = (ipaddress.ip_network("203.0.113.0/24"),)
    assert client.get("/metrics", REMOTE_ADDR=ELSEWHERE).status_code == 200
    assert client.get("/metrics").status_code == 403  # loopback is no longer listed


def test_scrape_gives_queue_depth_tasks_servers_and_heartbeats_for_a_built_state(
    client, monitors, settings
):
    settings.COMFYWEB_MAX_INFLIGHT = 40
    render, stills = make_team("Render"), make_team("Stills")
    healthy = make_server(
        "gpu-a",
        max_inflight=4,
        state={"health": "healthy", "event_stats": {"events_per_second": 2.5}, "queue_pending": 3},
    )
    make_server("gpu-b", state={"health": "unhealthy"})
    for _ in range(2):
        make_task(render, priority=Priority.HIGH)
    make_task(render)
    make_task(stills, priority=Priority.URGENT)
    make_task(render, dispatched_to=healthy)
    make_task(stills, status=Status.FAILED)

    samples = scrape(client)

    depth = {
        (dict(labels)["team"], dict(labels)["priority"]): value
        for (name, labels), value in samples.items()
        if name == "comfyweb_queue_depth"
    }
    assert depth == {
        (render.slug, "high"): 2,
        (render.slug, "normal"): 1,
        (stills.slug, "urgent"): 1,
    }
    assert by_label(samples, "comfyweb_tasks", "state") == {
        "pending": 4,
        "dispatched": 1,
        "running": 0,
        "completed": 0,
        "failed": 1,
        "canceled": 0,
    }
    assert by_label(samples, "comfyweb_server_healthy", "server") == {"gpu-a": 1, "gpu-b": 0}
    assert by_label(samples, "comfyweb_server_inflight", "server") == {"gpu-a": 1, "gpu-b": 0}
    assert by_label(samples, "comfyweb_server_max_inflight", "server")["gpu-a"] == 4
    assert by_label(samples, "comfyweb_server_utilisation", "server")["gpu-a"] == 0.25
    assert by_label(samples, "comfyweb_server_event_rate", "server") == {"gpu-a": 2.5}
    assert by_label(samples, "comfyweb_server_comfyui_queue_pending", "server")["gpu-a"] == 3
    assert samples[("comfyweb_inflight", ())] == 1
    assert samples[("comfyweb_max_inflight", ())] == 40

    assert samples[("comfyweb_monitors_alive", ())] == 2
    assert by_label(samples, "comfyweb_monitor_servers", "monitor") == {"mon-a": 2, "mon-b": 1}
    assert by_label(samples, "comfyweb_monitor_leases", "monitor") == {"mon-a": 2}  # b: unknown
    ages = by_label(samples, "comfyweb_monitor_heartbeat_age_seconds", "monitor")
    assert set(ages) == {"mon-a", "mon-b"}
    assert all(0 <= age < 10 for age in ages.values())
    assert by_label(samples, "comfyweb_up", "component")["monitor"] == 1
    assert set(by_label(samples, "comfyweb_metrics_part_ok", "part").values()) == {1}


def test_duration_histograms_count_the_recent_tasks_in_their_buckets(client):
    team, now = make_team(), timezone.now()

    def finished(queued_s: float, ran_s: float, ended_ago: timedelta) -> None:
        end = now - ended_ago
        start = end - timedelta(seconds=ran_s)
        make_task(
            team,
            status=Status.COMPLETED,
            created_at=start - timedelta(seconds=queued_s),
            dispatched_at=start,
            started_at=start,
            finished_at=end,
        )

    finished(queued_s=0.2, ran_s=4, ended_ago=timedelta(minutes=1))
    finished(queued_s=3, ran_s=20, ended_ago=timedelta(minutes=2))
    finished(queued_s=1, ran_s=7, ended_ago=timedelta(hours=2))  # outside the window

    samples = scrape(client)

    duration = by_label(samples, "comfyweb_task_duration_seconds_bucket", "le")
    assert (duration["2.5"], duration["5.0"], duration["10.0"], duration["30.0"]) == (0, 1, 1, 2)
    assert duration["+Inf"] == 2
    assert samples[("comfyweb_task_duration_seconds_gcount", ())] == 2
    assert samples[("comfyweb_task_duration_seconds_gsum", ())] == pytest.approx(24)
    latency = by_label(samples, "comfyweb_dispatch_latency_seconds_bucket", "le")
    assert (latency["0.25"], latency["1.0"], latency["2.5"], latency["5.0"]) == (1, 1, 1, 2)
    assert samples[("comfyweb_dispatch_latency_seconds_gsum", ())] == pytest.approx(3.2)
