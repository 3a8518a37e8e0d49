"""The monitor keeps each server's node catalogue (/object_info) for graph checks (#10)."""

from __future__ import annotations

import pytest

from servers import catalogues
from servers.models import NodeCatalogue, ServerState
from servers.simulator import SimulatorConfig
from tests.factories import make_server
from tests.monitoring import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_monitor_keeps_each_servers_catalogue_once_per_distinct_content(
    start_comfyui_sims, sim_server, start_monitor
):
    configs = [
        SimulatorConfig(time_scale=0.1),
        SimulatorConfig(time_scale=0.1),
        SimulatorConfig(time_scale=0.1, models={"checkpoints": ["other.safetensors"]}),
    ]
    sims = await start_comfyui_sims(3, configs=configs)
    servers = [await sim_server(sim) for sim in sims]
    await start_monitor()

    def all_read() -> dict[int, dict]:
        ids = [s.pk for s in servers]
        if ServerState.objects.filter(server_id__in=ids, catalogue__isnull=False).count() < 3:
            return {}
        return catalogues.catalogues_by_server(ids)

    read = await wait_until(all_read, what="three catalogues")
    same, twin, other = (read[s.pk] for s in servers)
    assert same == twin
    empty_image = same["EmptyImage"]["input"]["required"]
    assert empty_image["width"] == ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}]
    assert same["SaveImage"]["output_node"] is True
    assert "description" not in same["SaveImage"]  # trimmed to what validation reads
    ckpt = other["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    assert ckpt == ["other.safetensors"]

    def rows() -> int:
        return NodeCatalogue.objects.count()

    assert await wait_until(rows) == 2


def test_a_catalogue_no_server_uses_any_more_is_dropped(db):
    server = make_server()
    catalogues.store(server.pk, {"A": {"input": {}, "output": [], "output_node": True}})
    catalogues.store(server.pk, {"B": {"input": {}, "output": [], "output_node": True}})
    assert list(NodeCatalogue.objects.values_list("object_info", flat=True)) == [
        {"B": {"input": {}, "output": [], "output_node": True}}
    ]
    assert set(catalogues.catalogues_by_server([server.pk])[server.pk]) == {"B"}
