"""The fleet's live panels: the Servers table, the dashboard's compact panel and a
server's detail card, rendered on the server and pushed through `comfyweb.live`.

The monitor calls `publish_server()` whenever something visible about a server
changed; pages subscribe to the "servers" topic (and "server" keyed by id).

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

from collections.abc import Callable, Mapping
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


def render_detail(server_id: int) -> str:
    server = servers_with_state().filter(pk=server_id).first()
    if server is None:
        return f'<section id="{detail_target(server_id)}" class="card">Removed.</section>'
    context = table_context([server]) | {"server": server}
    return render_to_string("servers/detail.html#server-status", context)


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
