"""The models library in container pools (#14): every container a pool makes has the
library bound read-only at the pool's models mount, so a file downloaded into it is
one the container's ComfyUI lists at once. On the two real test engines; the third
engine URL, tcp://127.0.0.1:2376, is host 2's engine reached over TCP (a remote
engine, as far as ComfyWeb can tell: ../shared/docker/docker-test-hosts-up.sh)."""

from __future__ import annotations

import json

import docker
import docker.errors
import pytest

from servers.containers.engines import EngineError, create_container, labelled
from servers.containers.models import (
    DEFAULT_MODELS_MOUNT,
    HostStatus,
)
from servers.containers.placement import reserve
from tests.docker_engines import HOSTS, SIM_IMAGE, DockerEngines
from tests.factories import make_docker_host, make_pool, make_user
from tests.pool_deployment import POOL_COMMAND, PoolDeployment, pool_deployment
from tests.range_server import Content, MiB, RangeServer
from tests.serve_process import manage
from tests.servers.containers.engine_helpers import (
    START_BOUND,
    comfyui_get,
    engine_host,
    started,
    system_stats,
    wait_for,
)

pytestmark = pytest.mark.django_db

REMOTE_URL = "tcp://127.0.0.1:2376"  # host 2's engine, over TCP
# The simulator as a pool would run it: ComfyUI's models/ directory where the pool mounts it.
SIM_WITH_MODELS = [*POOL_COMMAND, "--models-dir", DEFAULT_MODELS_MOUNT]
NOT_MOUNTED = "not mounted: a remote engine (tcp) has no models directory set"


@pytest.fixture
def library(settings, tmp_path):
    """This test's models library: not made yet, as on a fresh install."""
    settings.COMFYWEB_MODELS_DIR = tmp_path / "library"
    return settings.COMFYWEB_MODELS_DIR


def mounts_of(engines: DockerEngines, index: int, docker_id: str) -> list[tuple]:
    attrs = engines.engines[index].client.api.inspect_container(docker_id)
    return [(m["Type"], m["Source"], m["Destination"], m["RW"]) for m in attrs["Mounts"]]


def remote_engine() -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=REMOTE_URL, timeout=30)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        pytest.skip(f"host 2's engine does not answer on {REMOTE_URL}: {exc}")
    return client


# -- on the engines ---------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(HOSTS)), ids=[spec.name for spec in HOSTS])
def test_a_pools_container_reads_the_library_read_only_and_sees_new_files_at_once(
    docker_engines: DockerEngines, deployment, library, index
):
    host = engine_host(docker_engines.engines[index])
    container = started(reserve(make_pool(image=SIM_IMAGE, hosts=[host], command=SIM_WITH_MODELS)))
    assert library.is_dir()  # made before the bind, not left to Docker (root's, empty)
    wait_for(lambda: system_stats(container), f"ComfyUI of {container}", START_BOUND)

    assert mounts_of(docker_engines, index, container.docker_id) == [
        ("bind", str(library), DEFAULT_MODELS_MOUNT, False)
    ]
    assert "fresh.safetensors" not in comfyui_get(container, "/models/checkpoints")

    (library / "checkpoints").mkdir()
    (library / "checkpoints" / "fresh.safetensors").write_bytes(b"weights")
    wait_for(
        lambda: "fresh.safetensors" in comfyui_get(container, "/models/checkpoints"),
        "the new file in the container's checkpoints",
        START_BOUND,
    )

    engine = docker_engines.engines[index].client
    wrote = engine.containers.get(container.docker_id).exec_run(
        ["python", "-c", f"open('{DEFAULT_MODELS_MOUNT}/checkpoints/x.safetensors', 'w')"]
    )
    assert wrote.exit_code != 0
    assert b"Read-only file system" in wrote.output
    assert sorted(p.name for p in (library / "checkpoints").iterdir()) == ["fresh.safetensors"]


def test_a_remote_host_without_a_models_directory_mounts_nothing_and_the_pages_say_why(
    docker_engines: DockerEngines, deployment, library, client
):
    remote_engine().close()
    host = engine_host(docker_engines.engines[1], docker_url=REMOTE_URL, name="remote")
    pool = make_pool("remote-pool", image=SIM_IMAGE, hosts=[host], command=SIM_WITH_MODELS)
    container = started(reserve(pool))
    wait_for(lambda: system_stats(container), f"ComfyUI of {container}", START_BOUND)

    assert mounts_of(docker_engines, 1, container.docker_id) == []
    assert not library.exists()  # not ours to make: the library is not bound there
    client.force_login(make_user())
    for page in (f"/servers/pools/{pool.pk}/", "/servers/"):
        html = client.get(page).content.decode()
        assert NOT_MOUNTED in html, page


def test_a_remote_hosts_models_directory_is_bound_as_it_is_and_never_made(
    docker_engines: DockerEngines, deployment, library, tmp_path
):
    remote_engine().close()
    elsewhere = tmp_path / "on-the-gpu-machine"
    host = engine_host(docker_engines.engines[1], docker_url=REMOTE_URL, models_dir=str(elsewhere))
    pool = make_pool(image=SIM_IMAGE, hosts=[host], command=SIM_WITH_MODELS)

    container = reserve(pool)
    with pytest.raises(EngineError, match=str(elsewhere)):
        create_container(container)  # refused with the path: never an empty directory
    assert not elsewhere.exists()
    assert labelled(host) == []

    elsewhere.mkdir()
    started(container)
    assert mounts_of(docker_engines, 1, container.docker_id) == [
        ("bind", str(elsewhere), DEFAULT_MODELS_MOUNT, False)
    ]
    assert not library.exists()


def test_the_pages_show_where_the_library_is_mounted(client, library):
    local = make_docker_host("local", docker_url="unix:///run/docker.sock")
    remote = make_docker_host("remote", docker_url="tcp://10.0.0.5:2375", status=HostStatus.OK)
    pool = make_pool("sdxl", hosts=[local, remote], models_mount="/app/models")
    bare = make_pool("bare", models_mount="")
    client.force_login(make_user())

    html = client.get(f"/servers/pools/{pool.pk}/").content.decode()
    assert "read-only at <code>/app/models</code>" in html
    assert f"local: <code>{library}</code>" in html
    assert "remote: <span" in html
    assert NOT_MOUNTED in html
    html = client.get(f"/servers/pools/{bare.pk}/").content.decode()
    assert "not mounted: the pool has no models mount" in html

    html = client.get("/servers/").content.decode()
    assert f"<code>{library}</code>" in html  # the local host's
    assert NOT_MOUNTED in html  # the remote one's
    assert "read-only at <code>/app/models</code>" in html
    assert "not mounted (no models mount)" in html


# -- a download, end to end -----------------------------------------------------------


def model_files(world: PoolDeployment, server_id: int) -> dict[str, list[str]] | None:
    """The model lists the monitor recorded for the server (None before its first read,
    and again from a library change until the monitor has read them anew)."""
    code = (
        "import json; from servers.models import ServerState; "
        f"s = ServerState.objects.filter(server_id={server_id}).first(); "
        "print('MODELS', json.dumps(s.model_files if s and s.capabilities_at else None))"
    )
    said = manage(world.serve, "shell", "-c", code).splitlines()
    return json.loads(next(line for line in said if line.startswith("MODELS "))[7:])


@pytest.mark.timeout(600)
def test_a_download_reaches_the_model_list_of_a_pools_server_long_before_its_ttl(
    docker_engines, tmp_path
):
    """serve's worker downloads into the library; the monitor is told to read the
    container's models again (long before their TTL) and finds the file through the mount."""
    with (
        RangeServer(Content(MiB)) as files,
        pool_deployment(tmp_path / "data", docker_engines.deployment) as world,
    ):
        world.add_hosts()
        pool = world.add_pool(min_size=1, max_size=1, command=SIM_WITH_MODELS)
        server_id = world.wait(
            lambda: next((c["server"] for c in world.pool(pool["id"])["containers"]), None),
            "the pool's container in the fleet",
        )
        listed = world.wait(lambda: model_files(world, server_id), "its model lists read")
        assert "fresh.safetensors" not in listed["checkpoints"]

        body = {"url": files.url(), "folder": "checkpoints", "filename": "fresh.safetensors"}
        download = world.call("POST", "downloads", body, expect=201)
        world.wait(
            lambda: world.call("GET", f"downloads/{download['id']}")["state"] == "completed",
            "the download completed",
        )
        world.wait(
            lambda: (
                "fresh.safetensors" in (model_files(world, server_id) or {}).get("checkpoints", [])
            ),
            "the file in the server's model list",
        )
