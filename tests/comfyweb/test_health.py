from __future__ import annotations

import logging

import pytest
from django_q.brokers import get_broker
from django_q.signing import SignedPackage
from django_q.status import Stat, Status

from comfyweb import health, health_log
from servers.monitor import heartbeat
from tests.clocks import FakeClock
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def worker_heartbeat():
    """A cluster status in Redis, written the way a running qcluster writes it."""
    broker = get_broker()
    status = Status(pid=4242, cluster_id="test-cluster")
    status.status = "Idle"
    status.workers = [4243, 4244]
    key = Stat.get_key(status.cluster_id)
    broker.set_stat(key, SignedPackage.dumps(status, True), 30)
    yield
    broker.connection.delete(key)


@pytest.fixture
def monitor_heartbeat():
    """A monitor heartbeat in Redis, written the way `manage.py monitor` writes it."""
    heartbeat.remove_beat("monitor-a")
    heartbeat.store_beat(heartbeat.beat_value("monitor-a", servers=3, interval=10))
    yield
    heartbeat.remove_beat("monitor-a")


@pytest.fixture
def no_monitor():
    heartbeat.redis_client().delete(heartbeat.KEY)


@pytest.fixture
def no_worker():
    broker = get_broker()
    for key in broker.connection.keys(f"{Stat.get_key('*')}"):
        broker.connection.delete(key)


def test_healthz_is_503_without_a_worker_heartbeat(client, no_worker, monitor_heartbeat):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["components"]["database"] == {"ok": True}
    assert body["components"]["redis"] == {"ok": True}
    assert body["components"]["worker"] == {"ok": False}
    assert body["components"]["monitor"] == {"ok": True}


def test_healthz_is_503_without_a_monitor_heartbeat(client, worker_heartbeat, no_monitor):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["components"]["monitor"] == {"ok": False}


def test_healthz_is_200_when_database_redis_worker_and_monitor_are_up(
    client, worker_heartbeat, monitor_heartbeat
):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response["Cache-Control"].startswith("max-age=0")


def test_logged_in_users_see_the_details(client, no_worker):
    client.force_login(make_user())
    worker = client.get("/healthz").json()["components"]["worker"]
    assert worker["detail"] == "WorkerMissing: no worker cluster heartbeat"


def test_logged_in_users_see_why_the_monitor_is_missing(client, no_monitor):
    client.force_login(make_user())
    monitor = client.get("/healthz").json()["components"]["monitor"]
    assert monitor["detail"] == "MonitorMissing: no monitor heartbeat"


def test_monitor_check_reports_the_servers_watched(monitor_heartbeat):
    monitor = heartbeat.check_monitor()
    assert monitor.ok
    assert monitor.extra["servers"] == 3
    assert "watching 3 server(s)" in monitor.detail


def test_worker_check_counts_clusters_and_workers(worker_heartbeat):
    worker = health.check_worker()
    assert worker.ok
    assert worker.extra["workers"] >= 2


def test_healthz_lists_every_monitor_and_worker_cluster_with_its_last_beat(
    client, no_monitor, worker_heartbeat
):
    for monitor_id, servers in (("monitor-a", 3), ("monitor-b", 5)):
        heartbeat.store_beat(heartbeat.beat_value(monitor_id, servers=servers, interval=10))
    client.force_login(make_user())
    components = client.get("/healthz").json()["components"]
    monitors = {m["id"]: m for m in components["monitor"]["monitors"]}
    assert set(monitors) == {"monitor-a", "monitor-b"}
    assert (monitors["monitor-b"]["servers"], monitors["monitor-b"]["leases"]) == (5, None)
    assert 0 <= monitors["monitor-a"]["age_s"] < 10
    assert components["monitor"]["servers"] == 8
    (cluster,) = [c for c in components["worker"]["clusters"] if c["id"] == "test-cluster"]
    assert (cluster["pid"], cluster["workers"], cluster["status"]) == (4242, 2, "Idle")
    assert 0 <= cluster["age_s"] < 30


def test_a_monitor_that_stopped_beating_drops_off_the_list(no_monitor):
    heartbeat.store_beat(heartbeat.beat_value("alive", servers=1, interval=10))
    heartbeat.store_beat(heartbeat.beat_value("dead", servers=1, interval=10))
    later = heartbeat.read_heartbeats()[0]["at"] + 40  # "dead" missed three beats...
    heartbeat.store_beat(
        heartbeat.beat_value("alive", servers=1, interval=10) | {"expires": later + 30}
    )
    assert [beat["id"] for beat in heartbeat.read_heartbeats(now=later)] == ["alive"]
    assert heartbeat.redis_client().hkeys(heartbeat.KEY) == [b"alive"]  # ...and was removed


def test_healthz_is_degraded_once_the_last_monitor_stopped_beating(
    client, worker_heartbeat, no_monitor
):
    heartbeat.store_beat(heartbeat.beat_value("gone", servers=1, interval=10) | {"expires": 0})
    assert client.get("/healthz").status_code == 503


def test_unreachable_redis_is_reported_not_raised(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    component = health.check_redis()
    assert not component.ok
    assert component.detail.startswith("ConnectionError")


def test_dashboard_shows_the_health_panel(client, no_worker):
    client.force_login(make_user())
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="health-panel"' in html
    assert 'data-component="worker"' in html
    assert "degraded" in html


def test_dashboard_health_panel_lists_each_monitor_and_cluster(
    client, monitor_heartbeat, worker_heartbeat
):
    client.force_login(make_user())
    html = client.get("/").content.decode()
    assert 'data-monitor="monitor-a"' in html
    assert "3 server(s), leases —" in html
    assert 'data-cluster="test-cluster"' in html


@pytest.fixture
def warm_up(monkeypatch):
    """A web process's warm-up on a clock the test moves."""
    state = health_log.WarmUp(clock=FakeClock())
    monkeypatch.setattr(health_log, "warm_up", state)
    return state


def _healthz_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "healthz" in r.getMessage() or r.name == "django.request"]


def test_a_503_while_the_web_process_warms_up_is_logged_as_info_not_error(
    client, warm_up, no_worker, monitor_heartbeat, caplog
):
    with caplog.at_level(logging.INFO):
        assert client.get("/healthz").status_code == 503
    [record] = _healthz_records(caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage() == "healthz 503: warming up, waiting for worker"


def test_a_503_after_the_warm_up_window_is_an_error_naming_the_failing_components(
    client, warm_up, no_worker, no_monitor, caplog
):
    client.get("/healthz")
    warm_up.clock.advance(health_log.WARM_UP_SECONDS)
    caplog.clear()
    assert client.get("/healthz").status_code == 503
    [record] = _healthz_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "healthz 503: degraded: worker, monitor"
    assert record.failing == ["worker", "monitor"]


def test_a_503_after_the_first_healthy_answer_is_an_error_at_once(
    client, warm_up, worker_heartbeat, monitor_heartbeat, caplog
):
    assert client.get("/healthz").status_code == 200
    heartbeat.remove_beat("monitor-a")
    assert client.get("/healthz").status_code == 503
    assert [r.levelno for r in _healthz_records(caplog)] == [logging.ERROR]
