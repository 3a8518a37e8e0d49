"""The containers on the pages (issue #13): the Servers page's Containers section and a
pool page's live block, rendered on the server and kept live through `comfyweb.live`.

Staff see Drain / Re-create / Remove beside each container, so the HTML differs
per user: a change broadcasts a refresh hint (`live.publish_refresh`) on the
"containers" topic (and "pool", keyed by pool id) and each browser fetches its own
view from `servers:containers_panel` / `servers:pool_panel`. The worker sending
`containers_changed` (connected in `servers.apps`) renders nothing.

The fragments hold no CSRF token (a socket snapshot is rendered without a
request): staff buttons name, by their `form` attribute, a form the page itself
rendered with the token (`servers/containers.html#container-forms`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from django.db.models import Count, Q
from django.template.loader import render_to_string
from django.urls import reverse

from comfyweb import live, topics
from servers.containers.models import (
    Container,
    ContainerPool,
    ContainerState,
    DockerHost,
    ScalingDecision,
)

TOPIC = "containers"
POOL_TOPIC = "pool"
TARGET = "containers-panel"
TEMPLATE = "servers/containers.html"
DECISIONS_SHOWN = 20
LIVE_STATES = (ContainerState.STARTING, ContainerState.RUNNING)


def pool_target(pool_id: int) -> str:
    return f"pool-{pool_id}-live"


def hosts_with_use() -> list[DockerHost]:
    """Every host with `held` (containers holding one of its ports) and `gpus_used`."""
    holding = Q(containers__stopped_at__isnull=True)
    return list(
        DockerHost.objects.annotate(
            held=Count("containers", filter=holding, distinct=True),
            gpus_used=Count("gpu_reservations", distinct=True),
        )
    )


def with_containers(pools: Iterable[ContainerPool]) -> list[ContainerPool]:
    """The pools, each with `holding` (its containers that hold a port, oldest first)
    and `live` (those starting or running), in one query for all of them."""
    pools = list(pools)
    by_pool: dict[int, list[Container]] = defaultdict(list)
    holding = (
        Container.objects.holding()
        .filter(pool__in=pools)
        .select_related("host", "server__state")
        .order_by("created_at", "pk")
    )
    for container in holding:
        # The summary of a failure: its first line (a log tail follows, shown on demand).
        container.error_head = container.error.split("\n", 1)[0]
        by_pool[container.pool_id].append(container)
    for pool in pools:
        pool.holding = by_pool[pool.pk]
        pool.live = sum(c.state in LIVE_STATES for c in pool.holding)
    return pools


def section_context(user) -> dict:
    return {
        "hosts": hosts_with_use(),
        "pools": with_containers(ContainerPool.objects.prefetch_related("hosts")),
        "user": user,
    }


def pool_context(pool: ContainerPool, user) -> dict:
    (pool,) = with_containers([pool])
    decisions: list[ScalingDecision] = list(pool.decisions.all()[:DECISIONS_SHOWN])
    return {"pool": pool, "decisions": decisions, "user": user}


def page_context(pool: ContainerPool, user) -> dict:
    """The pool's page: its live block and, per host it may use, where the library comes from."""
    library = [
        (host, bind[0] if (bind := pool.library_bind(host)) else "", pool.library_missing(host))
        for host in pool.usable_hosts()
    ]
    return pool_context(pool, user) | {"library": library}


def render_section(user) -> str:
    return render_to_string(f"{TEMPLATE}#containers-panel", section_context(user))


def render_pool(pool_id: int, user) -> str:
    pool = ContainerPool.objects.filter(pk=pool_id).first()
    if pool is None:
        return f'<section id="{pool_target(pool_id)}" class="card">This pool was deleted.</section>'
    return render_to_string(f"{TEMPLATE}#pool-live", pool_context(pool, user))


def publish_containers(**_signal_kwargs: object) -> None:
    """Tell the pages showing containers to fetch theirs again (`containers_changed`)."""
    live.publish_refresh(TOPIC, TARGET, reverse("servers:containers_panel"))
    for pool_id in ContainerPool.objects.values_list("pk", flat=True):
        live.publish_refresh(
            POOL_TOPIC,
            pool_target(pool_id),
            reverse("servers:pool_panel", args=[pool_id]),
            key=str(pool_id),
        )


def _signed_in(user) -> bool:
    return user.is_authenticated and user.is_active


section_topic = topics.Topic(
    name=TOPIC,
    allowed=lambda user, key: key is None and _signed_in(user),
    snapshot=lambda user, key: [(TARGET, render_section(user))],
)
pool_topic = topics.Topic(
    name=POOL_TOPIC,
    allowed=lambda user, key: _signed_in(user) and key is not None and key.isdigit(),
    snapshot=lambda user, key: [(pool_target(int(key)), render_pool(int(key), user))],
)
