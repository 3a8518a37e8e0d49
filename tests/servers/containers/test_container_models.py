"""Docker hosts, pools and containers: what their fields accept, and what the database refuses."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from servers.containers.models import Container, ContainerPool, DockerHost, GpuReservation
from tests.factories import make_docker_host, make_pool

pytestmark = pytest.mark.django_db


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
