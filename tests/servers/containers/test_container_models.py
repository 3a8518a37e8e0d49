"""Docker hosts, pools and containers: what their fields accept, and what the database refuses."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import ProtectedError
from django.utils import timezone

from servers.containers.models import (
    DEFAULT_MODELS_MOUNT,
    Container,
    ContainerPool,
    DockerHost,
    GpuReservation,
)
from tests.factories import make_docker_host, make_pool

pytestmark = pytest.mark.django_db

NOT_MOUNTED = "not mounted: a remote engine (tcp) has no models directory set"


def problems(instance) -> dict[str, list[str]]:
    try:
        instance.full_clean()
    except ValidationError as error:
        return error.message_dict
    return {}


@pytest.mark.parametrize(
    "url",
    [
        "unix:///run/docker.sock",
        "unix:///var/run/docker.sock",
        "tcp://127.0.0.2:2375",
        "tcp://gpu-1:2376",
    ],
)
def test_docker_urls_that_are_accepted(url):
    assert problems(DockerHost(name="h", docker_url=url)) == {}


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:2375", "tcp://127.0.0.1", "tcp://:2375", "unix://", "/run/docker.sock", ""],
)
def test_docker_urls_that_are_refused(url):
    assert "docker_url" in problems(DockerHost(name="h", docker_url=url))


def test_a_host_port_range_runs_upwards_within_the_port_numbers():
    assert "port_max" in problems(
        DockerHost(name="h", docker_url="tcp://a:1", port_min=9, port_max=8)
    )
    assert "port_max" in problems(
        DockerHost(name="h", docker_url="tcp://a:1", port_min=1, port_max=70000)
    )
    assert problems(DockerHost(name="h", docker_url="tcp://a:1", port_min=8, port_max=8)) == {}


def test_the_database_refuses_a_backwards_port_range():
    with pytest.raises(IntegrityError):
        make_docker_host(port_min=20010, port_max=20000)


@pytest.mark.parametrize("gpus", [[0, 1], ["0", "0"], ["0", ""], "0,1", {"0": 1}])
def test_host_gpus_are_a_list_of_distinct_ids(gpus):
    assert "gpus" in problems(DockerHost(name="h", docker_url="tcp://a:1", gpus=gpus))


def test_a_publish_address_is_an_ip_address():
    assert "publish_address" in problems(
        DockerHost(name="h", docker_url="tcp://a:1", publish_address="gpu-1.internal")
    )


def test_pool_fields_check_their_shapes():
    pool = ContainerPool(
        name="p",
        image="img",
        command="python main.py",
        environment={"A": 1},
        volumes=["/models"],
        min_size=3,
        max_size=2,
    )
    assert set(problems(pool)) == {"command", "environment", "volumes", "max_size"}
    good = ContainerPool(
        name="p",
        image="img",
        command=["python", "main.py", "--listen"],
        environment={"HF_HOME": "/models"},
        volumes=["/srv/models:/models:ro", "cache:/root/.cache"],
        min_size=2,
        max_size=2,
    )
    assert problems(good) == {}
    assert ContainerPool(name="q", image="img").command is None  # the image's own command


def test_the_database_refuses_a_pool_smaller_at_most_than_at_least():
    with pytest.raises(IntegrityError):
        make_pool(min_size=3, max_size=1)


def test_a_pool_with_no_hosts_chosen_may_use_every_host():
    a, b = make_docker_host("a"), make_docker_host("b")
    assert list(make_pool().usable_hosts()) == [a, b]
    assert list(make_pool(hosts=[b]).usable_hosts()) == [b]


def test_two_containers_never_hold_one_port_of_a_host_but_a_removed_one_lets_go():
    host, other = make_docker_host(), make_docker_host()
    pool = make_pool()
    first = Container.objects.create(pool=pool, host=host, port=20000)
    Container.objects.create(pool=pool, host=other, port=20000)  # another host: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        Container.objects.create(pool=pool, host=host, port=20000)
    first.release()
    Container.objects.create(pool=pool, host=host, port=20000)
    assert Container.objects.holding().filter(host=host).count() == 1


def test_a_gpu_of_a_host_is_held_by_one_container_until_it_is_released():
    host = make_docker_host(gpus=["0", "1"])
    pool = make_pool()
    first = Container.objects.create(pool=pool, host=host, port=20000, gpus=["0"])
    GpuReservation.objects.create(host=host, device_id="0", container=first)
    second = Container.objects.create(pool=pool, host=host, port=20001, gpus=["0"])
    with pytest.raises(IntegrityError), transaction.atomic():
        GpuReservation.objects.create(host=host, device_id="0", container=second)
    first.release()
    assert first.stopped_at is not None
    GpuReservation.objects.create(host=host, device_id="0", container=second)


def test_a_host_with_containers_cannot_be_deleted():
    host = make_docker_host()
    Container.objects.create(pool=make_pool(), host=host, port=20000, stopped_at=timezone.now())
    with pytest.raises(ProtectedError):
        host.delete()


# -- the models library (#14) -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "models",
        "./models",
        "/opt/ComfyUI/models/",
        "/opt/./models",
        "/opt/x/../models",
        "/",
        "//x",
        "/srv/a:b",
        "/srv/a,b",
    ],
)
def test_models_paths_are_absolute_and_normalised(path):
    pool = ContainerPool(name="p", image="img", models_mount=path)
    host = DockerHost(name="h", docker_url="tcp://a:1", models_dir=path)
    assert "models_mount" in problems(pool)
    assert "models_dir" in problems(host)


def test_an_empty_models_path_is_allowed_and_the_mount_has_a_default():
    assert ContainerPool(name="p", image="img").models_mount == "/opt/ComfyUI/models"
    assert problems(ContainerPool(name="p", image="img", models_mount="")) == {}
    assert problems(DockerHost(name="h", docker_url="tcp://a:1", models_dir="")) == {}
    assert problems(DockerHost(name="h", docker_url="tcp://a:1", models_dir="/srv/m")) == {}


@pytest.mark.parametrize(
    "volume",
    [
        "/srv/models:/opt/ComfyUI/models:ro",
        "/srv/models:/opt/ComfyUI/models/",
        "loras:/opt/ComfyUI/models/loras",
        "/srv/x:/opt/ComfyUI/models/../models/checkpoints:ro",
    ],
)
def test_a_pools_volume_may_not_land_on_or_inside_the_models_mount(volume):
    pool = ContainerPool(name="p", image="img", volumes=["/srv/in:/in", volume])
    said = problems(pool)
    assert list(said) == ["volumes"]
    assert "is the models mount" in said["volumes"][0]
    pool.models_mount = ""  # not mounted: the pool may mount its own models there
    assert problems(pool) == {}


@pytest.mark.parametrize(
    "volume", ["/srv/comfyui:/opt/ComfyUI", "/srv/m:/opt/ComfyUI/models2", "cache:/root/.cache"]
)
def test_volumes_beside_or_around_the_models_mount_are_fine(volume):
    assert problems(ContainerPool(name="p", image="img", volumes=[volume])) == {}


def test_where_a_pools_containers_get_the_library_from(settings, tmp_path):
    settings.COMFYWEB_MODELS_DIR = library = tmp_path / "library"
    local = make_docker_host("local", docker_url="unix:///run/docker.sock")
    local_own = make_docker_host("local-own", docker_url="unix:///run/d.sock", models_dir="/m")
    remote = make_docker_host("remote", docker_url="tcp://10.0.0.5:2375")
    remote_set = make_docker_host("remote-set", docker_url="tcp://gpu:2375", models_dir="/data/m")
    pool = make_pool()
    assert pool.library_bind(local) == (str(library), DEFAULT_MODELS_MOUNT)
    assert pool.library_bind(local_own) == ("/m", DEFAULT_MODELS_MOUNT)
    assert pool.library_bind(remote) is None
    assert pool.library_missing(remote).startswith(NOT_MOUNTED)
    assert pool.library_bind(remote_set) == ("/data/m", DEFAULT_MODELS_MOUNT)
    assert pool.library_missing(local) == ""
    unmounted = make_pool(models_mount="")
    assert unmounted.library_bind(local) is None
    assert unmounted.library_missing(local) == "not mounted: the pool has no models mount"


@pytest.mark.django_db(transaction=True)
def test_upgrading_keeps_a_pool_that_mounts_its_own_models_without_the_library():
    def migrate(target: list[tuple[str, str]]):
        executor = MigrationExecutor(connection)
        executor.migrate(target)
        executor.loader.build_graph()
        return executor.loader.project_state(target).apps

    old = migrate([("servers", "0006_local_instances")])
    Pool = old.get_model("servers", "ContainerPool")
    own = Pool.objects.create(name="own", image="i", volumes=["/srv/m:/opt/ComfyUI/models/:ro"])
    inside = Pool.objects.create(name="inside", image="i", volumes=["l:/opt/ComfyUI/models/loras"])
    other = Pool.objects.create(name="other", image="i", volumes=["/srv/c:/root/.cache"])
    try:
        new = migrate([("servers", "0007_models_library_mounts")])
        mounts = dict(
            new.get_model("servers", "ContainerPool").objects.values_list("pk", "models_mount")
        )
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert mounts == {own.pk: "", inside.pk: "", other.pk: DEFAULT_MODELS_MOUNT}
