"""The Docker engines, on the two real test engines (tests/docker_engines.py).

Checking a host: its engine answers (ok, engine id and version) or not
(unreachable, with the reason); nothing raises either way. Containers: created
from a placed row (never pulling), labelled as ours, seen, and removed; an
engine that refuses or is gone raises EngineError naming the host.
"""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site
from django.contrib.messages.storage.fallback import FallbackStorage
from django.test import RequestFactory

from servers.containers.engines import (
    CONTAINER_LABEL,
    DEPLOYMENT_LABEL,
    POOL_LABEL,
    EngineError,
    ImageMissing,
    Observed,
    check_host,
    create_container,
    deployment_id,
    inspect,
    labelled,
    logs_tail,
    remove,
    remove_by_id,
    run_spec,
)
from servers.containers.models import Container, DockerHost, HostStatus
from servers.containers.placement import reserve
from servers.models import FleetSettings
from servers.simulator.routes_info import COMFYUI_VERSION
from tests.docker_engines import HOSTS, SIM_IMAGE, DockerEngines, remove_labelled
from tests.factories import make_docker_host, make_pool
from tests.servers.containers.engine_helpers import (
    EXIT_BOUND,
    SLEEPER,
    START_BOUND,
    engine_host,
    started,
    system_stats,
    wait_for,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("url", "says"),
    [("unix:///nonexistent.sock", "No such file"), ("tcp://127.0.0.1:1", "refused")],
)
def test_an_unreachable_host_is_marked_with_the_reason(url, says):
    host = make_docker_host(
        docker_url=url, status=HostStatus.OK, engine_id="ABCD:EFGH", engine_version="20.10"
    )
    check_host(host, timeout=3)
    host.refresh_from_db()
    assert host.status == HostStatus.UNREACHABLE
    assert says in host.error
    assert host.checked_at is not None
    assert host.engine_id == "ABCD:EFGH"  # the last engine seen there, kept


def test_both_test_engines_are_reachable_and_distinct(docker_engines):
    hosts = [
        make_docker_host(
            engine.spec.name,
            docker_url=engine.spec.docker_url,
            publish_address=engine.spec.publish_address,
            status=HostStatus.UNKNOWN,
            error="an old error",
        )
        for engine in docker_engines.engines
    ]
    for host in hosts:
        check_host(host)
    seen = list(DockerHost.objects.filter(pk__in=[h.pk for h in hosts]))
    assert [h.status for h in seen] == [HostStatus.OK, HostStatus.OK]
    assert [h.error for h in seen] == ["", ""]
    assert all(h.engine_version and h.checked_at for h in seen)
    assert len({h.engine_id for h in seen}) == 2
    assert {h.engine_id for h in seen} == {
        engine.client.info()["ID"] for engine in docker_engines.engines
    }


def test_staff_check_hosts_from_the_admin(admin_user):
    host = make_docker_host("gone", docker_url="unix:///nonexistent.sock")
    request = RequestFactory().post("/admin/servers/dockerhost/")
    request.user = admin_user
    request.session = {}
    request._messages = FallbackStorage(request)
    site._registry[DockerHost].check_hosts(request, DockerHost.objects.filter(pk=host.pk))
    host.refresh_from_db()
    assert host.status == HostStatus.UNREACHABLE
    assert [str(m) for m in request._messages] == [f"gone: {host.error}"]


# -- containers on the engines ----------------------------------------------------------


@pytest.mark.parametrize("index", range(len(HOSTS)), ids=[spec.name for spec in HOSTS])
def test_a_created_container_serves_comfyui_on_its_hosts_address_and_is_removed(
    docker_engines: DockerEngines, deployment, index, tmp_path
):
    host = engine_host(docker_engines.engines[index])
    (tmp_path / "hello.txt").write_text("hi")
    pool = make_pool(
        image=SIM_IMAGE,
        hosts=[host],
        environment={"COMFYWEB_TEST": "yes"},
        volumes=[f"{tmp_path}:/data:ro"],
    )
    container = started(reserve(pool))

    stats = wait_for(lambda: system_stats(container), f"ComfyUI of {container}", START_BOUND)
    assert stats["system"]["comfyui_version"] == COMFYUI_VERSION

    seen = inspect(container)
    assert seen is not None
    assert (seen.docker_id, seen.running, seen.status, seen.exit_code) == (
        container.docker_id,
        True,
        "running",
        None,
    )
    assert seen.name == f"comfyweb-{deployment}-{container.pk}"
    ours = {
        DEPLOYMENT_LABEL: deployment,
        POOL_LABEL: str(pool.pk),
        CONTAINER_LABEL: str(container.pk),
    }
    assert seen.labels.items() >= ours.items()  # beside the image's own labels
    assert (seen.container_row_id, seen.pool_id) == (container.pk, pool.pk)
    assert [found.docker_id for found in labelled(host)] == [container.docker_id]
    attrs = docker_engines.engines[index].client.api.inspect_container(container.docker_id)
    assert "COMFYWEB_TEST=yes" in attrs["Config"]["Env"]
    mounts = {(m["Source"], m["Destination"], m["RW"]) for m in attrs["Mounts"]}
    assert (str(tmp_path), "/data", False) in mounts

    remove(container)
    assert inspect(container) is None
    assert labelled(host) == []
    remove(container)  # already gone: nothing to do


def test_a_missing_image_is_never_pulled_and_nothing_is_created(docker_engines, deployment):
    host = engine_host(docker_engines.engines[1])
    container = reserve(make_pool(image="comfyweb/never-built:1", hosts=[host]))
    with pytest.raises(ImageMissing) as raised:
        create_container(container)
    assert str(raised.value) == (
        f"image comfyweb/never-built:1 is not on Docker host {host.name} "
        "(ComfyWeb never pulls: load it there first)"
    )
    assert labelled(host) == []


def test_a_container_that_cannot_start_is_removed_and_the_host_named(docker_engines, deployment):
    engine = docker_engines.engines[0]
    host = engine_host(engine)
    holder = docker_engines.run_simulator(engine, host.port_min)  # of the port the row gets
    container = reserve(make_pool(image=SIM_IMAGE, hosts=[host]))
    with pytest.raises(EngineError, match=rf"Docker host {host.name} could not start .*allocated"):
        create_container(container)
    assert [found.docker_id for found in labelled(host)] == [holder.id]


def test_the_run_spec_says_what_the_pool_and_the_row_say(settings):
    settings.COMFYWEB_DEPLOYMENT = "prod/eu 1"
    host = make_docker_host(
        publish_address="127.0.0.2", gpus=["0", "1", "2"], models_dir="/srv/comfyweb/models"
    )
    pool = make_pool(
        image="comfyweb/comfyui:2",
        hosts=[host],
        command=["python", "main.py", "--listen"],
        environment={"HF_HOME": "/models"},
        volumes=["/srv/models:/models:ro"],
        models_mount="/app/models",
        container_port=8190,
        gpus_per_container=2,
    )
    container = reserve(pool)
    assert run_spec(container) == {
        "image": "comfyweb/comfyui:2",
        "command": ["python", "main.py", "--listen"],
        "environment": {"HF_HOME": "/models"},
        "volumes": ["/srv/models:/models:ro"],
        "ports": {"8190/tcp": ("127.0.0.2", 20000)},
        "labels": {
            DEPLOYMENT_LABEL: "prod/eu 1",
            POOL_LABEL: str(pool.pk),
            CONTAINER_LABEL: str(container.pk),
        },
        "name": f"comfyweb-prod-eu-1-{container.pk}",  # what Docker allows in a name
        "init": True,
        "mounts": [
            {
                "Target": "/app/models",
                "Source": "/srv/comfyweb/models",
                "Type": "bind",
                "ReadOnly": True,
            }
        ],
        "device_requests": [
            {
                "Driver": "",
                "Count": 0,
                "DeviceIDs": ["0", "1"],
                "Capabilities": [["gpu"]],
                "Options": {},
            }
        ],
    }
    pool.command = None
    without_gpus = Container(pool=pool, host=host, port=20001, gpus=[])
    spec = run_spec(without_gpus)
    assert spec["command"] is None  # the image's own
    assert "device_requests" not in spec
    pool.models_mount = ""
    assert "mounts" not in run_spec(without_gpus)  # the library not mounted


def test_an_engine_is_asked_for_the_gpus_of_the_row(docker_engines, deployment):
    # Created, not started: this machine's engines have no GPU to start one with.
    host = engine_host(docker_engines.engines[0], gpus=["0", "1"])
    container = reserve(make_pool(image=SIM_IMAGE, hosts=[host], gpus_per_container=2))
    assert container.gpus == ["0", "1"]
    client = docker_engines.engines[0].client
    made = client.containers.create(**run_spec(container))
    asked = made.attrs["HostConfig"]["DeviceRequests"]
    assert [(r["DeviceIDs"], r["Capabilities"]) for r in asked] == [(["0", "1"], [["gpu"]])]
    assert [found.status for found in labelled(host)] == ["created"]
    assert [found.exit_code for found in labelled(host)] == [None]  # never ran: no exit code

    remove_by_id(host, made.id)
    assert labelled(host) == []


def test_a_container_that_exits_shows_its_exit_code_and_logs(docker_engines, deployment):
    host = engine_host(docker_engines.engines[1])
    command = ["python", "-c", "import sys; print('boom'); sys.exit(3)"]
    container = started(reserve(make_pool(image=SIM_IMAGE, hosts=[host], command=command)))

    seen = wait_for(
        lambda: (seen := inspect(container)) and not seen.running and seen,
        "the container to exit",
        EXIT_BOUND,
    )
    assert (seen.status, seen.exit_code, seen.oom_killed, seen.error) == ("exited", 3, False, "")
    assert "boom" in logs_tail(container)

    remove(container)
    assert logs_tail(container) == ""


def test_only_this_deployments_containers_are_labelled(docker_engines, deployment):
    engine = docker_engines.engines[0]
    host = engine_host(engine)
    ours = started(reserve(make_pool(image=SIM_IMAGE, hosts=[host], command=SLEEPER)))
    other_deployment = f"{deployment}-other"  # starts like a test's: swept if left behind
    engine.client.containers.run(
        SIM_IMAGE,
        SLEEPER,
        detach=True,
        init=True,
        labels={DEPLOYMENT_LABEL: other_deployment, CONTAINER_LABEL: str(ours.pk)},
    )
    try:
        assert [found.docker_id for found in labelled(host)] == [ours.docker_id]
    finally:
        remove_labelled(engine.client, other_deployment)


def test_an_unreachable_engine_raises_engine_error_naming_the_host(settings):
    settings.COMFYWEB_DEPLOYMENT = "test-unreachable"
    host = make_docker_host("gone-host", docker_url="unix:///nonexistent.sock")
    container = reserve(make_pool(image=SIM_IMAGE, hosts=[host]))
    container.docker_id = "0123456789ab"
    calls = [
        lambda: create_container(container),
        lambda: inspect(container),
        lambda: logs_tail(container),
        lambda: remove(container),
        lambda: labelled(host),
        lambda: remove_by_id(host, "0123456789ab"),
    ]
    for call in calls:
        with pytest.raises(EngineError, match=r"Docker host gone-host .*No such file"):
            call()


def test_the_deployment_id_is_the_setting_else_the_databases(settings):
    settings.COMFYWEB_DEPLOYMENT = "staging"
    assert deployment_id() == "staging"
    settings.COMFYWEB_DEPLOYMENT = ""
    assert deployment_id() == FleetSettings.load().deployment_id.hex[:12]


def test_ids_are_read_from_the_labels():
    seen = Observed("abc", "x", False, "exited", 1, {CONTAINER_LABEL: "12", POOL_LABEL: "x"})
    assert (seen.container_row_id, seen.pool_id) == (12, None)
