"""The Servers page's Containers section follows the scheduler live, and staff drain a
container from it, in a real Chromium (issue #13).

The rows are written into the running `serve`'s database by a management shell,
which also sends `containers_changed` as the scheduler would: the page must show
the new container without a reload. The host's engine is nowhere, so the worker's
scheduler leaves the container as it is (starting: its engine does not answer yet;
stopping: not removed while its engine does not answer).
"""

from __future__ import annotations

import json

import pytest

from tests.browser import log_in, screenshot
from tests.serve_process import manage

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOST, POOL = "browser-dock", "browser-pool"
MAKE_POOL = f"""
import json
from servers.containers.models import ContainerPool, DockerHost
host = DockerHost.objects.create(
    name="{HOST}", docker_url="unix:///nonexistent/docker.sock", port_min=21000, port_max=21099
)
pool = ContainerPool.objects.create(name="{POOL}", image="comfyweb-simulator:test", max_size=2)
pool.hosts.set([host])
print(json.dumps({{"host": host.pk, "pool": pool.pk}}))
"""
MAKE_CONTAINER = f"""
from comfyweb.signals import containers_changed
from servers.containers.models import Container, ContainerPool, DockerHost
container = Container.objects.create(
    pool=ContainerPool.objects.get(name="{POOL}"),
    host=DockerHost.objects.get(name="{HOST}"),
    port=21000,
    docker_id="browser-test-container",
)
containers_changed.send_robust(sender=ContainerPool)
print(container.pk)
"""
CLEAN_UP = f"""
from servers.containers.models import ContainerPool, DockerHost
ContainerPool.objects.filter(name="{POOL}").delete()
DockerHost.objects.filter(name="{HOST}").delete()
"""
RECORD_SWAPS = (
    "window.swaps = [];"
    " document.addEventListener('live:swapped', (e) => window.swaps.push(e.detail.target));"
)


def shell(serve, code: str) -> str:
    return manage(serve, "shell", "--no-imports", "-c", code)


def test_a_new_container_appears_live_and_staff_drain_it(page, running_serve):
    log_in(page, running_serve)
    made = json.loads(shell(running_serve, MAKE_POOL))
    try:
        page.add_init_script(RECORD_SWAPS)
        page.goto(f"{running_serve.url}servers/")
        pool = f"#containers-panel #pool-{made['pool']}"
        page.wait_for_selector(f"{pool}:has-text('No containers.')")
        # The socket's snapshot of the section has come: what changes next is pushed.
        page.wait_for_function("() => window.swaps.includes('containers-panel')")
        page.evaluate("window.notReloaded = true")

        container = int(shell(running_serve, MAKE_CONTAINER))
        row = f"{pool} #container-{container}"
        page.wait_for_selector(f"{row}[data-state='starting']:has-text('{HOST}:21000')")
        assert "No containers." not in page.inner_text(pool)
        assert page.evaluate("window.notReloaded") is True
        screenshot(page, "containers-live.png")

        # The Drain button sits in the pushed fragment and submits the page's own form.
        page.click(f"{row} button:text('Drain')")
        page.wait_for_selector(f"{row}[data-state='stopping']")
        assert f"drained by {running_serve.username}" in page.inner_text(row)
        assert "draining: removed once idle" in page.inner_text(".messages")
        screenshot(page, "containers-drained.png")
        assert page.console_errors == []
    finally:
        shell(running_serve, CLEAN_UP)
