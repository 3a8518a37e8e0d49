from __future__ import annotations

import pytest

from servers import demo
from servers.models import Server, ServerKind


@pytest.mark.django_db
def test_demo_servers_are_registered_as_simulated_with_different_speeds():
    demo.register(3, 8300)
    servers = list(Server.objects.order_by("name"))
    assert [s.name for s in servers] == ["sim-1", "sim-2", "sim-3"]
    assert {s.kind for s in servers} == {ServerKind.SIMULATED}
    assert [s.base_url for s in servers] == [f"http://127.0.0.1:{p}" for p in (8300, 8301, 8302)]
    assert len({s.weight for s in servers}) == 3
    assert [s.is_primary for s in servers] == [True, False, False]


@pytest.mark.django_db
def test_a_smaller_demo_repoints_servers_and_disables_the_rest():
    demo.register(3, 8300)
    demo.register(2, 8400)
    enabled = dict(Server.objects.values_list("name", "enabled"))
    assert enabled == {"sim-1": True, "sim-2": True, "sim-3": False}
    assert Server.objects.get(name="sim-1").base_url == "http://127.0.0.1:8400"


def test_simulator_command_gives_each_server_its_speed_and_models(tmp_path):
    argv = demo.simulator_argv(3, 8188, tmp_path)
    assert argv[1:3] == ["-m", "servers.simulator"]
    assert argv[argv.index("--speed") + 1] == "1,2,0.5"
    assert argv[argv.index("--models") + 1].count(";") == 2
