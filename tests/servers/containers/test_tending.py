"""The container scheduler against the two real Docker engines: pools grow for waiting
work, containers are watched until ComfyUI answers, die and are replaced, drain and
go when idle, and what an earlier run left is adopted or removed by label."""

from __future__ import annotations

import time
from collections.abc import Callable

import docker.errors
import httpx
import pytest
from django.utils import timezone

from servers.containers import tending
from servers.containers.engines import DEPLOYMENT_LABEL, labelled
from servers.containers.models import Container, ContainerState, DockerHost, HostStatus
from servers.models import Health, Server, ServerKind, ServerState
from tasks.models import Status
from tasks.reconcile import reconcile_server
from tests.docker_engines import SIM_IMAGE, DockerEngines, Engine
from tests.factories import make_docker_host, make_pool, make_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

# Generous: a container starts in about a second, but the machines are shared.
DEADLINE = 120.0
# Inside the container: its published port is what the host exposes.
SIMULATOR = ["python", "-m", "servers.simulator", "--host", "0.0.0.0", "--port", "8188"]  # noqa: S104
# Waits for /tmp/go (made by `docker exec`) before it starts the simulator: a slow start
# whose end the test decides.
SIMULATOR_WHEN_TOLD = [
    "sh",
    "-c",
    "while [ ! -e /tmp/go ]; do sleep 0.1; done; exec " + " ".join(SIMULATOR),
]


@pytest.fixture
def engines(docker_engines, settings, enqueued) -> DockerEngines:
    """The engines, with this test's deployment label on every container it makes."""
    settings.COMFYWEB_DEPLOYMENT = docker_engines.deployment
    return docker_engines


def host_of(engine: Engine, ports: int = 4) -> DockerHost:
    first = engine.free_port_run(ports)
    return make_docker_host(
        engine.spec.name,
        docker_url=engine.spec.docker_url,
        publish_address=engine.spec.publish_address,
        port_min=first,
        port_max=first + ports - 1,
        status=HostStatus.UNKNOWN,
    )


def tend_until(check: Callable[[], object], what: str) -> object:
    """Pass after pass until `check()` is truthy (Docker and ComfyUI say nothing when
    they are ready: the scheduler itself polls them)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        tending.tend()
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"never {what}; containers: {list(Container.objects.values())}")


def running_in(pool) -> list[Container]:
    return list(pool.containers.filter(state=ContainerState.RUNNING).select_related("server"))


def test_a_pool_grows_for_waiting_work_across_both_hosts_and_its_containers_join_the_fleet(
    engines,
):
    hosts = [host_of(engine) for engine in engines.engines]
    pool = make_pool(image=SIM_IMAGE, max_size=2, jobs_per_container=1, hosts=hosts)
    make_task()
    make_task()

    containers = tend_until(lambda: len(running_in(pool)) == 2 and running_in(pool), "2 running")

    assert {c.host.name for c in containers} == {"host-1", "host-2"}  # fewest containers first
    for container in containers:
        server = container.server
        assert server.kind == ServerKind.CONTAINER
        assert server.base_url == f"http://{container.host.publish_address}:{container.port}"
        assert server.max_inflight == 1
        assert httpx.get(f"{server.base_url}/system_stats", timeout=10).status_code == 200
        (seen,) = [o for o in labelled(container.host) if o.docker_id == container.docker_id]
        assert seen.running
        assert seen.pool_id == pool.pk
        assert seen.container_row_id == container.pk
    pool.refresh_from_db()
    assert pool.desired_size == 2
    assert pool.decisions.filter(action="start 2").exists()
    assert pool.decision == "2 waiting + 0 in flight ÷ 1 per container = 2"


def test_a_container_that_exits_at_once_is_an_error_with_its_log_tail_and_backs_off(engines):
    host = host_of(engines.engines[0])
    crash = ["python", "-c", "import sys; print('no CUDA device found'); sys.exit(3)"]
    pool = make_pool(image=SIM_IMAGE, command=crash, min_size=1, hosts=[host])

    failed = tend_until(
        lambda: pool.containers.filter(state=ContainerState.ERROR).first(), "an error"
    )

    assert "exited with code 3" in failed.error
    assert "no CUDA device found" in failed.error
    assert failed.stopped_at is not None  # removed: its port is free again
    assert labelled(host) == []
    pool.refresh_from_db()
    assert pool.failures_in_row == 1
    assert pool.backoff_until > timezone.now()
    tending.tend()  # within the backoff: nothing new is started
    assert pool.containers.count() == 1
    pool.refresh_from_db()
    assert "after the crash backoff (1 failed in a row" in pool.decision


def test_a_missing_image_is_an_error_naming_image_and_host_and_nothing_is_pulled(engines):
    host = host_of(engines.engines[1])
    pool = make_pool(image="comfyweb/not-built-here:1", min_size=1, hosts=[host])

    failed = tend_until(
        lambda: pool.containers.filter(state=ContainerState.ERROR).first(), "an error"
    )

    assert "comfyweb/not-built-here:1" in failed.error
    assert "host-2" in failed.error
    client = engines.engines[1].client
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("comfyweb/not-built-here:1")


def test_a_slow_start_is_waited_for_while_the_container_lives(engines):
    engine = engines.engines[0]
    pool = make_pool(
        image=SIM_IMAGE, command=SIMULATOR_WHEN_TOLD, min_size=1, hosts=[host_of(engine)]
    )
    container = tend_until(
        lambda: pool.containers.exclude(docker_id="").first(), "a created container"
    )
    for _ in range(5):  # running, ComfyUI not answering: still starting, not an error
        tending.tend()
    container.refresh_from_db()
    assert container.state == ContainerState.STARTING

    engine.client.containers.get(container.docker_id).exec_run(["sh", "-c", "touch /tmp/go"])

    tend_until(lambda: running_in(pool), "running")


def test_a_killed_container_is_replaced_and_its_tasks_go_back_to_the_queue(engines, enqueued):
    engine = engines.engines[0]
    pool = make_pool(image=SIM_IMAGE, min_size=1, hosts=[host_of(engine)])
    (first,) = tend_until(lambda: running_in(pool), "running")
    task = make_task(dispatched_to=first.server)

    engine.client.containers.get(first.docker_id).kill()

    tend_until(lambda: Container.objects.get(pk=first.pk).state == ContainerState.ERROR, "failed")
    first.refresh_from_db()
    assert "exited" in first.error
    assert first.stopped_at is not None
    server = Server.objects.get(pk=first.server_id)
    assert not server.enabled
    assert server.state.health == Health.UNHEALTHY
    assert ("tasks.jobs.reconcile_server", server.pk) in enqueued
    reconcile_server(server.pk)
    task.refresh_from_db()
    assert task.status == Status.PENDING  # retried elsewhere, as for any failed server

    (second,) = tend_until(lambda: running_in(pool), "replaced")  # after the crash backoff
    assert second.pk != first.pk
    assert server not in Server.objects.in_fleet()


def test_an_idle_container_drains_then_goes_and_a_busy_one_is_waited_for(engines):
    engine = engines.engines[1]
    pool = make_pool(image=SIM_IMAGE, max_size=1, idle_seconds=0, hosts=[host_of(engine)])
    task = make_task()
    (container,) = tend_until(lambda: running_in(pool), "running")
    state = ServerState.objects.filter(server=container.server)
    task.status, task.server = Status.RUNNING, container.server
    task.save()
    state.update(inflight=1)
    tending.tend()
    container.refresh_from_db()
    assert container.state == ContainerState.RUNNING
    assert container.idle_since is None

    task.status = Status.COMPLETED
    task.save()
    state.update(inflight=0)
    tend_until(
        lambda: Container.objects.get(pk=container.pk).state == ContainerState.STOPPING, "draining"
    )
    assert Server.objects.get(pk=container.server_id).draining
    state.update(inflight=1)  # a prompt it was given just before the drain
    tending.tend()
    container.refresh_from_db()
    assert container.state == ContainerState.STOPPING
    assert container.stopped_at is None
    # Its prompt done (its slot given back), its outputs still being fetched from it.
    state.update(inflight=0)
    task.status, task.slot_held = Status.RUNNING, False
    task.save()
    tending.tend()
    container.refresh_from_db()
    assert container.stopped_at is None
    task.status = Status.COMPLETED
    task.save()
    tend_until(lambda: Container.objects.get(pk=container.pk).stopped_at, "removed")

    assert labelled(container.host) == []
    assert container.server not in Server.objects.in_fleet()
    pool.refresh_from_db()
    assert pool.desired_size == 0


def test_start_up_adopts_known_containers_and_removes_leftovers_of_its_own_label_only(engines):
    engine = engines.engines[0]
    host = host_of(engine)
    pool = make_pool(image=SIM_IMAGE, min_size=1, hosts=[host])
    (kept,) = tend_until(lambda: running_in(pool), "running")
    leftover = engines.run_simulator(engine, engine.free_port())
    foreign = engine.client.containers.run(
        SIM_IMAGE, detach=True, labels={DEPLOYMENT_LABEL: engines.deployment + "-other"}
    )
    try:
        vanished = Container.objects.create(
            pool=pool,
            host=host,
            port=host.port_max,
            docker_id="f" * 64,
            state=ContainerState.RUNNING,
        )

        tending.adopt()

        with pytest.raises(docker.errors.NotFound):
            engine.client.containers.get(leftover.id)
        engine.client.containers.get(foreign.id)  # another deployment's: untouched
        vanished.refresh_from_db()
        assert vanished.state == ContainerState.ERROR
        assert vanished.stopped_at is not None
        assert "gone from host-1" in vanished.error
        kept.refresh_from_db()
        assert kept.state == ContainerState.RUNNING
        assert kept.stopped_at is None
        assert [o.docker_id for o in labelled(host)] == [kept.docker_id]
    finally:
        foreign.remove(force=True)


def test_an_unreachable_host_is_marked_with_its_reason_while_the_other_keeps_working(engines):
    away = make_docker_host("host-away", docker_url="unix:///nonexistent/docker.sock")
    host = host_of(engines.engines[0])
    pool = make_pool(image=SIM_IMAGE, min_size=1, hosts=[away, host])

    (container,) = tend_until(lambda: running_in(pool), "running")

    assert container.host == host
    away.refresh_from_db()
    assert away.status == HostStatus.UNREACHABLE
    assert "No such file" in away.error
