"""The fleet's live panels: the Servers table, the dashboard's compact panel and a
server's detail card, rendered on the server and pushed through `comfyweb.live`.

The monitor calls `publish_servers()` with the servers whose visible state
changed (one tick's worth at a time): their rows, the compact panel's hint and
their detail cards go out from one read, and the whole table only when servers
came, went or changed places (the row ids on the page are then not the table's).
Pages subscribe to the "servers" topic (and "server" keyed by id).

A server's active tasks (dispatched or running), counted by the tasks app (a
`WorkSource`, registered in its AppConfig.ready), show as two numbers: "in
flight", the tasks holding one of its slots (their prompt is queued or running
there), and "collecting", the tasks whose prompt has ended there and whose
outputs are being fetched (their slot already went to the next prompt). Summed,
they are what the dashboard's queue panel counts as dispatched + running. The
dashboard renders the two panels from one read (`table_context(work=...)`), and
so that no update shows one newer than the other, the compact fleet panel is
never pushed alone once a work source is registered: browsers get a refresh
hint and fetch both. `ServerState.inflight` is the dispatcher's slot counter:
equal to "in flight" but for the moment between claiming a slot and claiming
the task, and not what people ask.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta

from django.db.models import OuterRef, Subquery
from django.template.loader import render_to_string
from django.utils import timezone

from comfyweb import live, topics
from servers.models import FailureRecord, FleetSettings, Health, Server

TOPIC = "servers"
DETAIL_TOPIC = "server"
ROWS_TARGET = "server-rows"
COMPACT_TARGET = "fleet-panel"


@dataclass(frozen=True)
class ServerWork:
    """Active tasks per server id, in two parts that never overlap."""

    inflight: Mapping[int, int]  # holding a slot: the prompt is queued or running there
    collecting: Mapping[int, int]  # prompt ended there, outputs still being fetched


@dataclass(frozen=True)
class WorkSource:
    """What the fleet panels need to know about tasks, from the app that has them."""

    work: Callable[[], ServerWork]
    panels_url: Callable[[], str]  # the partial with the compact panel and its queue panel


_work: WorkSource | None = None


def use_work_source(source: WorkSource) -> None:
    global _work
    _work = source


def detail_target(server_id: int) -> str:
    return f"server-{server_id}-status"


def row_target(server_id: int) -> str:
    return f"server-{server_id}"


@dataclass(frozen=True)
class FleetSummary:
    total: int
    healthy: int
    unhealthy: int
    unknown: int
    inflight: int
    queued: int

    @property
    def status(self) -> str:
        if self.total == 0:
            return "empty"
        return "ok" if self.healthy == self.total else "degraded"


def servers_with_state():
    """Servers with their state and latest failure, in one query."""
    latest = FailureRecord.objects.filter(server=OuterRef("pk")).order_by("-at")
    return (
        Server.objects.select_related("state")
        .annotate(
            last_failure_at=Subquery(latest.values("at")[:1]),
            last_failure_reason=Subquery(latest.values("reason")[:1]),
        )
        .order_by("priority", "name")
    )


def summarize(servers) -> FleetSummary:
    watched = [s for s in servers if s.enabled and hasattr(s, "state")]
    states = [s.state for s in watched]
    return FleetSummary(
        total=len(states),
        healthy=sum(st.health == Health.HEALTHY for st in states),
        unhealthy=sum(st.health == Health.UNHEALTHY for st in states),
        unknown=sum(st.health == Health.UNKNOWN for st in states),
        inflight=sum(getattr(s, "in_flight", s.state.inflight) for s in watched),
        queued=sum(st.queue_pending for st in states),
    )


def table_context(servers=None, *, work: ServerWork | None = None) -> dict:
    """`work`: the tasks per server, when the caller read them together with other
    numbers on the same page (the dashboard); else they are counted here."""
    servers = list(servers if servers is not None else servers_with_state())
    fleet = FleetSettings.load()
    window = timedelta(seconds=fleet.affinity_window)
    now = timezone.now()
    if work is None and _work is not None:
        work = _work.work()
    for server in servers:
        server.affinity_for = server.state.affinity_key(window, now) if server.state else None
        if work is not None:
            server.in_flight = work.inflight.get(server.pk, 0)
            server.collecting = work.collecting.get(server.pk, 0)
        else:  # nobody counts tasks (the tasks app is not installed): the slot counter
            server.in_flight = server.state.inflight if server.state else 0
            server.collecting = 0
    return {"servers": servers, "summary": summarize(servers), "fleet": fleet}


def render_rows(context: dict | None = None) -> str:
    return render_to_string("servers/list.html#server-rows", context or table_context())


def render_compact(context: dict | None = None) -> str:
    return render_to_string("servers/compact.html", context or table_context())


def render_row(server, context: dict) -> str:
    return render_to_string("servers/list.html#server-row", context | {"server": server})


def render_detail(server_id: int) -> str:
    server = servers_with_state().filter(pk=server_id).first()
    if server is None:
        return _removed(server_id)
    return _render_detail(server, table_context([server]))


def _render_detail(server, context: dict) -> str:
    return render_to_string("servers/detail.html#server-status", context | {"server": server})


def _removed(server_id: int) -> str:
    return f'<section id="{detail_target(server_id)}" class="card">Removed.</section>'


def publish_server(server_id: int) -> None:
    """Push the fleet table, the compact panel and this server's card to browsers."""
    context = table_context()
    live.publish_fragment(TOPIC, ROWS_TARGET, render_rows(context))
    if _work is not None:  # comes with the queue panel, from one read
        live.publish_refresh(TOPIC, COMPACT_TARGET, _work.panels_url())
    else:
        live.publish_fragment(TOPIC, COMPACT_TARGET, render_compact(context))
    live.publish_fragment(
        DETAIL_TOPIC, detail_target(server_id), render_detail(server_id), key=str(server_id)
    )


# The row order last pushed whole from this process: while it holds, a changed
# server's row replaces its own element on the page.
_pushed_order: tuple[int, ...] | None = None
_pushed_lock = threading.Lock()


def publish_servers(server_ids: Collection[int]) -> None:
    """Push the rows, the compact panel and the cards of these servers, from one read.

    The cost grows with the servers that changed, not with the fleet: only their
    rows are rendered, unless the table's rows are not the ones last pushed.
    """
    global _pushed_order
    if not server_ids:
        return
    order = tuple(Server.objects.order_by("priority", "name").values_list("pk", flat=True))
    with _pushed_lock:
        whole = order != _pushed_order
        _pushed_order = order
    servers = servers_with_state()
    if not whole and _work is not None:  # else the compact panel needs the whole fleet
        servers = servers.filter(pk__in=server_ids)
    context = table_context(servers)
    if whole:
        live.publish_fragment(TOPIC, ROWS_TARGET, render_rows(context))
    else:
        for server in context["servers"]:
            live.publish_fragment(TOPIC, row_target(server.pk), render_row(server, context))
    if _work is not None:  # comes with the queue panel, from one read
        live.publish_refresh(TOPIC, COMPACT_TARGET, _work.panels_url())
    else:
        live.publish_fragment(TOPIC, COMPACT_TARGET, render_compact(context))
    found = {server.pk: server for server in context["servers"]}
    for server_id in server_ids:
        server = found.get(server_id)
        html = _removed(server_id) if server is None else _render_detail(server, context)
        live.publish_fragment(DETAIL_TOPIC, detail_target(server_id), html, key=str(server_id))


def _signed_in(user, key: str | None = None) -> bool:
    return user.is_authenticated and user.is_active


def _fleet_snapshot(user, key: str | None) -> topics.Snapshot:
    context = table_context()
    if _work is not None:  # the compact panel comes with the queue panel's snapshot
        return [(ROWS_TARGET, render_rows(context))]
    return [(ROWS_TARGET, render_rows(context)), (COMPACT_TARGET, render_compact(context))]


def _detail_allowed(user, key: str | None) -> bool:
    return _signed_in(user) and key is not None and key.isdigit()


fleet_topic = topics.Topic(
    name=TOPIC, allowed=lambda user, key: key is None and _signed_in(user), snapshot=_fleet_snapshot
)
detail_topic = topics.Topic(
    name=DETAIL_TOPIC,
    allowed=_detail_allowed,
    snapshot=lambda user, key: [(detail_target(int(key)), render_detail(int(key)))],
)
