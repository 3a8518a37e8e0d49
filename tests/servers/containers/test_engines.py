"""Checking a Docker host: its engine answers (ok, engine id and version) or not
(unreachable, with the reason); nothing raises either way."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site
from django.contrib.messages.storage.fallback import FallbackStorage
from django.test import RequestFactory

from servers.containers.engines import check_host
from servers.containers.models import DockerHost, HostStatus
from tests.factories import make_docker_host

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
