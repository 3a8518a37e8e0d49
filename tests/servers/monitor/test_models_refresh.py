"""Another process asks the monitor to read servers' model lists again (a download
finished in the models library): it does within a tick, for those servers only."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from servers.monitor.refresh import RefreshRequests, request_models_refresh
from tests.monitoring import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_requested_refresh_refetches_the_capabilities_of_that_server_only(
    start_comfyui_sims, sim_server, start_monitor
):
    first, second = await start_comfyui_sims(2)
    asked, other = await sim_server(first), await sim_server(second)
    running = await start_monitor()
    cache = running.monitor.shared.capabilities
    for server in (asked, other):
        await wait_until(lambda s=server: cache.counts(s.pk)["hits"] >= 2, what="cache hits")
    assert cache.counts(asked.pk)["misses"] == 1  # the TTL (600 s) is far away

    await database_sync_to_async(request_models_refresh)([asked.pk])
    await wait_until(lambda: cache.counts(asked.pk)["misses"] == 2, what="refetch")
    hits = cache.counts(other.pk)["hits"]
    await wait_until(lambda: cache.counts(other.pk)["hits"] >= hits + 2, what="two more checks")
    assert cache.counts(other.pk)["misses"] == 1
    assert cache.counts(asked.pk)["misses"] == 2  # once per request


async def test_only_a_stamp_that_changed_after_the_first_look_is_due():
    requests = RefreshRequests()
    request_ids = [910_001, 910_002]
    await database_sync_to_async(request_models_refresh)(request_ids[:1])  # before the monitor
    assert await requests.due(request_ids) == []
    assert await requests.due(request_ids) == []
    await database_sync_to_async(request_models_refresh)(request_ids)
    assert await requests.due(request_ids) == request_ids
    assert await requests.due(request_ids) == []
