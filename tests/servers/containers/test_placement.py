"""Placement (A4): the host with the fewest containers and a free port (and GPUs) gets
the next one; its port and GPUs are reserved at once, so concurrent reservations never
share them; when nothing fits, the error says why for every host."""

from __future__ import annotations

from collections import Counter

import pytest

from servers.containers import placement
from servers.containers.models import Container, ContainerState, GpuReservation, HostStatus
from servers.containers.placement import NoPlacement, reserve
from tests.concurrency import in_threads
from tests.factories import make_docker_host, make_pool


@pytest.mark.django_db
class TestReserve:
    def test_containers_spread_across_two_hosts_by_count(self):
        a = make_docker_host("a", port_min=20000, port_max=20009)
        make_docker_host("b", port_min=30000, port_max=30009)
        pool = make_pool()
        Container.objects.create(pool=make_pool(), host=a, port=20005)  # another pool's, on a
        placed = [reserve(pool) for _ in range(5)]
        assert [(c.host.name, c.port) for c in placed] == [
            ("b", 30000),
            ("a", 20000),  # a tie (2 each) goes to the first by name
            ("b", 30001),
            ("a", 20001),
            ("b", 30002),
        ]
        assert all(c.state == ContainerState.STARTING and c.gpus == [] for c in placed)

    def test_a_removed_container_frees_its_port_for_the_next(self):
        make_docker_host(port_min=20000, port_max=20001)
        pool = make_pool()
        first, _ = reserve(pool), reserve(pool)
        first.release()
        assert reserve(pool).port == 20000

    def test_a_full_port_range_is_refused_with_the_reason_for_each_host(self):
        make_docker_host("full", port_min=20000, port_max=20001)
        make_docker_host("off", enabled=False)
        make_docker_host("down", status=HostStatus.UNREACHABLE, error="connection refused")
        make_docker_host("new", status=HostStatus.UNKNOWN)
        pool = make_pool("sdxl")
        reserve(pool), reserve(pool)
        with pytest.raises(NoPlacement) as refused:
            reserve(pool)
        assert refused.value.reasons == {
            "full": "port range full (2/2 used)",
            "off": "disabled",
            "down": "unreachable (connection refused)",
            "new": "not checked yet (status unknown)",
        }
        assert str(refused.value).startswith(
            "No Docker host can take a container of pool sdxl: full: port range full (2/2 used);"
        )
        assert Container.objects.count() == 2

    def test_gpu_ids_are_reserved_and_never_shared(self):
        host = make_docker_host("gpu", gpus=["0", "1", "2"])
        pool = make_pool(gpus_per_container=2)
        first = reserve(pool)
        assert first.gpus == ["0", "1"]
        assert set(first.gpu_reservations.values_list("device_id", flat=True)) == {"0", "1"}
        with pytest.raises(NoPlacement) as refused:
            reserve(pool)
        assert refused.value.reasons == {"gpu": "not enough GPUs (1 free, 2 needed)"}
        one_gpu = reserve(make_pool(gpus_per_container=1))
        assert (one_gpu.host, one_gpu.gpus) == (host, ["2"])
        first.release()
        assert reserve(pool).gpus == ["0", "1"]

    def test_a_pool_asking_for_gpus_skips_hosts_without_and_one_asking_none_may_use_them(self):
        make_docker_host("cpu")
        make_docker_host("gpu", gpus=["0"])
        Container.objects.create(pool=make_pool(), host=make_docker_host("zzz"), port=20000)
        assert reserve(make_pool(gpus_per_container=1)).host.name == "gpu"
        assert reserve(make_pool()).host.name == "cpu"  # fewest containers, GPUs or not

    def test_a_pool_uses_only_its_hosts(self):
        make_docker_host("a")
        b = make_docker_host("b")
        pool = make_pool(hosts=[b])
        assert {reserve(pool).host.name for _ in range(3)} == {"b"}
        b.enabled = False
        b.save()
        with pytest.raises(NoPlacement) as refused:
            reserve(pool)
        assert refused.value.reasons == {"b": "disabled"}  # a is not its host: not named

    def test_a_disabled_pool_or_no_host_at_all_is_refused(self):
        with pytest.raises(NoPlacement, match="no Docker host is configured"):
            reserve(make_pool())
        make_docker_host()
        with pytest.raises(NoPlacement, match="the pool is disabled"):
            reserve(make_pool(enabled=False))


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_never_share_a_port_or_a_gpu(monkeypatch, tmp_path):
    # No second attempt: a collision would surface as an IntegrityError, so this
    # shows the host lock keeps them apart, not the retry.
    monkeypatch.setattr(placement, "ATTEMPTS", 1)
    a = make_docker_host("a", port_min=20000, port_max=20004, gpus=["0", "1", "2", "3", "4"])
    b = make_docker_host("b", port_min=20000, port_max=20004, gpus=["0", "1", "2", "3", "4"])
    pool = make_pool(gpus_per_container=1, max_size=20)

    def work() -> tuple[int, int, str] | str:
        try:
            container = reserve(pool)
        except NoPlacement:
            return "refused"
        return container.host_id, container.port, container.gpus[0]

    results = in_threads(12, work, tmp_path)  # 10 places for 12 reservations
    placed = [r for r in results if r != "refused"]
    assert len(placed) == 10
    assert results.count("refused") == 2
    assert len({(host, port) for host, port, _ in placed}) == 10
    assert len({(host, gpu) for host, _, gpu in placed}) == 10
    assert Counter(host for host, _, _ in placed) == {a.pk: 5, b.pk: 5}
    assert GpuReservation.objects.count() == Container.objects.count() == 10
