"""The balancer's database side: snapshot the fleet, record and log each decision.

`servers.balancer` decides; this module only reads `Server` + `ServerState`,
writes `BalancerDecision` rows (B9) and the affinity/LRU marks dispatch leaves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from servers import balancer, speed
from servers.balancer import Decision, Policy, ServerSnapshot
from servers.containers import autoscale
from servers.containers.models import ContainerPool
from servers.models import BalancerDecision, FleetSettings, Server, ServerState
from servers.requirements import Requirements, model_index, requirements_from_graph

logger = logging.getLogger("servers.balancer")

# The fleet page shows the latest few; older rows only cost space.
KEEP_DECISIONS = 500
# Candidates, and servers left out, that a decision's row and log line name.
KEPT = 10
_REASON_LENGTH = BalancerDecision._meta.get_field("reason").max_length or 300


def snapshot(now: datetime | None = None) -> list[ServerSnapshot]:
    """Every server with its latest state, in one query.

    `now` is accepted for symmetry with `pick_server`; the snapshot holds raw
    timestamps and `choose()` judges their age.

    The catalogues come as the database's JSON text and are parsed once per
    distinct text (`_capabilities`): they change when a server's models or nodes
    do, and dispatch reads the fleet every pass.
    """
    del now
    servers = (
        Server.objects.select_related("state")
        .defer("state__node_classes", "state__model_files", "state__event_stats")
        .annotate(
            node_classes_json=Cast("state__node_classes", TextField()),
            model_files_json=Cast("state__model_files", TextField()),
        )
    )
    return [_snapshot_of(server) for server in servers]


def _snapshot_of(server: Server) -> ServerSnapshot:
    try:
        state = server.state
    except ObjectDoesNotExist:
        # A server created without save() (bulk_create, fixtures) has no state row
        # yet: it counts as never checked, which keeps it out of balanced mode.
        state = ServerState(server=server)
    known = state.capabilities_at is not None
    node_classes, model_files = (
        _capabilities(server.node_classes_json, server.model_files_json) if known else (None, None)
    )
    return ServerSnapshot(
        id=server.pk,
        name=server.name,
        enabled=server.enabled,
        draining=server.draining,
        health=state.health,
        unhealthy_since=state.unhealthy_since,
        inflight=state.inflight,
        max_inflight=server.max_inflight,
        queue_running=state.queue_running,
        queue_pending=state.queue_pending,
        weight=server.weight,
        priority=server.priority,
        is_primary=server.is_primary,
        tags=frozenset(_strings(server.tags)),
        node_classes=node_classes,
        model_files=model_files,
        last_used_at=state.last_used_at,
        last_affinity_key=state.last_affinity_key,
        last_affinity_at=state.last_affinity_at,
        load_checked_at=state.load_checked_at,
    )


_parsed_capabilities: dict[
    tuple[str | None, str | None], tuple[frozenset[str], Mapping[str, frozenset[str]]]
] = {}
_PARSED_KEPT = 1024


def _capabilities(
    node_classes_json: str | None, model_files_json: str | None
) -> tuple[frozenset[str], Mapping[str, frozenset[str]]]:
    """A server's node classes and model index from their JSON text, parsed once per text.

    Shared between threads (the monitor dispatches on one of its own): each entry
    is built whole before it is stored, so a reader never sees half of one.
    """
    key = (node_classes_json, model_files_json)
    parsed = _parsed_capabilities.get(key)
    if parsed is None:
        if len(_parsed_capabilities) >= _PARSED_KEPT:
            _parsed_capabilities.clear()
        parsed = (
            frozenset(_strings(_json(node_classes_json))),
            MappingProxyType(model_index(_lists(_json(model_files_json)))),
        )
        _parsed_capabilities[key] = parsed
    return parsed


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _strings(value: Any) -> Iterable[str]:
    # JSON columns hold whatever was written; a bad row must not break balancing.
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _lists(value: Any) -> Mapping[str, Iterable[str]]:
    if not isinstance(value, dict):
        return {}
    return {folder: _strings(names) for folder, names in value.items() if isinstance(folder, str)}


def policy() -> Policy:
    settings = FleetSettings.load()
    return Policy(
        auto_switch=settings.auto_switch,
        affinity_window=timedelta(seconds=settings.affinity_window),
        load_cache_age=timedelta(seconds=settings.load_cache_age),
    )


def pick_server(graph: Mapping[str, Any], **options: Any) -> Decision:
    """Choose the server for `graph` now, by load (no predictions): a one-off
    `Plan.pick`, which documents the options."""
    return Plan.load().pick(graph, **options)


class Plan:
    """The fleet as one dispatch pass sees it: read once, then kept up to date in
    memory as the pass claims slots and plans tasks onto busy servers, so every
    pick of the pass is made against the work already given out.

    With `backlog` (server id -> predicted seconds of work already on it, which
    the caller counts from its active tasks) the balancer places each task where
    it is predicted to finish first (`servers.speed`); without, by load.
    The database stays the judge: a slot claimed here is still claimed with a
    conditional UPDATE, so a plan read a moment ago never overfills a server.

    With `hold_records`, the decisions' rows wait for `record_decisions()` and go
    in one insert (a pass's picks were three statements each: insert, and the
    pruning's lookup and delete).
    """

    def __init__(
        self,
        servers: list[ServerSnapshot],
        policy: Policy,
        speeds: speed.SpeedTable | None,
        backlog: Mapping[int, float] | None = None,
        *,
        hold_records: bool = False,
    ) -> None:
        self.speeds = speeds
        self.policy = policy
        self.hold_records = hold_records
        self._rows: list[BalancerDecision] = []
        backlog = backlog or {}
        self.servers = {
            s.id: dataclasses.replace(s, backlog=backlog.get(s.id, 0.0)) for s in servers
        }

    @classmethod
    def load(cls, *, predicting: bool = False, hold_records: bool = False) -> Plan:
        servers = snapshot()
        speeds = None
        if predicting:
            speeds = speed.SpeedTable.load({s.id: s.weight for s in servers if s.enabled})
        return cls(servers, policy(), speeds, hold_records=hold_records)

    def with_backlog(self, backlog: Mapping[int, float]) -> Plan:
        servers = list(self.servers.values())
        return Plan(servers, self.policy, self.speeds, backlog, hold_records=self.hold_records)

    def seconds(self, server_id: int, work: speed.Work) -> float:
        """Predicted run time of `work` on the server (0 when not predicting)."""
        return self.speeds.seconds(server_id, work) if self.speeds is not None else 0.0

    def pick(
        self,
        graph: Mapping[str, Any],
        *,
        tags: Iterable[str] = (),
        workflow_key: str | None = None,
        affinity_key: str = "",
        record: bool = True,
        avoid: Collection[int] = (),
        refused_by: Mapping[int, str] = MappingProxyType({}),
        work: speed.Work | None = None,
    ) -> Decision:
        """Choose the server for `graph`; record and log why (B9).

        `avoid`: ids of servers a retried task failed on; they are chosen only when
        no other server could run the task at all (one that is merely full is
        waited for: dispatch prefers another server).
        `refused_by`: server id -> why its node catalogue rejects the graph (see
        `Requirements.refused_by`); those servers are never chosen.
        `work`: the graph's `speed.Work`, if the caller has it already.

        If the balancer itself raises, the primary alone is used (B6, single-server
        mode) and the error is logged with its traceback.
        """
        requirements = _requirements(graph, workflow_key, affinity_key, tuple(tags))
        seconds: dict[int, float] = {}
        if self.speeds is not None:
            work = work or speed.Work.of(graph)
            seconds = {sid: self.speeds.seconds(sid, work) for sid in self.servers}
        requirements = dataclasses.replace(requirements, refused_by=refused_by, seconds=seconds)
        now = timezone.now()
        servers = list(self.servers.values())
        try:
            decision = _choose_avoiding(servers, requirements, self.policy, now, avoid)
        except Exception as error:
            logger.exception("balancer failed; single-server mode")
            decision = balancer.single_server(servers, f"{type(error).__name__}: {error}")
        if decision.planned_on is None:  # a plan is remade every pass: not worth a row
            summary = _summary(decision)
            if record:
                self._rows.append(_row(decision, summary, requirements.workflow_key, now))
                if not self.hold_records:
                    self.record_decisions()
            _log(decision, summary, requirements.workflow_key)
        return decision

    def record_decisions(self) -> None:
        """Write the rows of the decisions picked since the last call, then prune."""
        if not self._rows:
            return
        rows, self._rows = BalancerDecision.objects.bulk_create(self._rows), []
        _prune(max((row.pk for row in rows if row.pk is not None), default=None))

    def claimed(self, server_id: int, seconds: float) -> None:
        """A slot of the server went to a task predicted to run `seconds` there."""
        server = self.servers.get(server_id)
        if server is not None:
            self.servers[server_id] = dataclasses.replace(
                server, inflight=server.inflight + 1, backlog=server.backlog + seconds
            )

    def planned(self, server_id: int, seconds: float) -> None:
        """A task waits for the (full) server: later picks of the pass count it there."""
        server = self.servers.get(server_id)
        if server is not None:
            self.servers[server_id] = dataclasses.replace(server, backlog=server.backlog + seconds)

    def reread(self, server_id: int) -> None:
        """A claim on the server lost (another dispatcher took the slot): read how
        many of its slots are taken again."""
        server = self.servers.get(server_id)
        if server is None:
            return
        taken = ServerState.objects.filter(server_id=server_id).values_list("inflight", flat=True)
        inflight = next(iter(taken), server.max_inflight)
        self.servers[server_id] = dataclasses.replace(server, inflight=inflight)


_requirements_memo: dict[tuple[str, str, tuple[str, ...]], Requirements] = {}
_REQUIREMENTS_KEPT = 4096


def _requirements(
    graph: Mapping[str, Any], workflow_key: str | None, affinity_key: str, tags: tuple[str, ...]
) -> Requirements:
    """`requirements_from_graph`, remembered by workflow key: graphs of one key
    differ only in seeds, which change none of what a server must have."""
    if not workflow_key:
        return requirements_from_graph(graph, affinity_key=affinity_key, tags=tags)
    memo = (workflow_key, affinity_key, tags)
    found = _requirements_memo.get(memo)
    if found is None:
        if len(_requirements_memo) >= _REQUIREMENTS_KEPT:
            _requirements_memo.clear()
        found = requirements_from_graph(
            graph, workflow_key=workflow_key, affinity_key=affinity_key, tags=tags
        )
        _requirements_memo[memo] = found
    return found


def _choose_avoiding(
    servers: list[ServerSnapshot],
    requirements: Requirements,
    fleet_policy: Policy,
    now: datetime,
    avoid: Collection[int],
) -> Decision:
    if avoid:
        others = [server for server in servers if server.id not in avoid]
        decision = balancer.choose(others, requirements, fleet_policy, now)
        # Another server that can run it but is busy is worth waiting for; an
        # avoided server is used only when no other one could run it at all.
        if not decision.waiting or _busy_elsewhere(decision):
            return decision
    return balancer.choose(servers, requirements, fleet_policy, now)


def _busy_elsewhere(decision: Decision) -> bool:
    return any(reason.startswith(balancer.FULL) for reason in decision.excluded.values())


def capacity_for(requirements: Requirements) -> list[str]:
    """Container pools that could start a server able to run what a task needs.

    Work that no current server can run is then accepted to wait for one of them
    instead of being refused at submission (`workflows.runnable`). A pool judges by
    what its servers last reported, or is assumed able if none ever did.
    """
    pools = ContainerPool.objects.filter(enabled=True, delete_requested_at__isnull=True)
    return [
        pool.name
        for pool in pools.exclude(max_size=0)
        if autoscale.can_run(requirements, pool.node_classes, pool.model_files)
    ]


def _summary(decision: Decision) -> dict[str, Any]:
    """What a decision's row and log line keep of it: the `KEPT` leaders and the first
    `KEPT` servers left out, those not merely full first, with how many there were.
    Every server in every one was ~30 % of a dispatching monitor's CPU at 500
    servers (JSON, and the log filter redacting each string)."""
    excluded = sorted(decision.excluded.items(), key=lambda item: item[1].startswith(balancer.FULL))
    return {
        "candidates": [c.as_dict() for c in decision.candidates[:KEPT]],
        "candidates_total": len(decision.candidates),
        "excluded": dict(excluded[:KEPT]),
        "excluded_total": len(excluded),
    }


def _row(
    decision: Decision, summary: dict[str, Any], workflow_key: str, now: datetime
) -> BalancerDecision:
    return BalancerDecision(
        at=now,
        chosen_id=decision.server_id,
        workflow_key=workflow_key,
        reason=_clip(decision.reason),
        mode=decision.mode,
        **summary,
    )


def _prune(newest_pk: int | None) -> None:
    # One indexed lookup for the oldest row to keep, then a range delete; ids grow
    # with insertion, so this keeps the newest KEEP_DECISIONS whatever their `at`
    # (up to ours: rows another process inserted since are not counted against us).
    rows = BalancerDecision.objects.all()
    if newest_pk is not None:
        rows = rows.filter(pk__lte=newest_pk)
    cutoff = rows.order_by("-pk").values_list("pk", flat=True)[KEEP_DECISIONS - 1 : KEEP_DECISIONS]
    oldest_kept = next(iter(cutoff), None)
    if oldest_kept is not None:
        BalancerDecision.objects.filter(pk__lt=oldest_kept).delete()


def _clip(reason: str) -> str:
    return reason if len(reason) <= _REASON_LENGTH else reason[: _REASON_LENGTH - 1] + "…"


def _log(decision: Decision, summary: dict[str, Any], workflow_key: str) -> None:
    logger.info(
        "balancer %s → %s: %s",
        decision.mode,
        decision.server_name or "nobody",
        decision.reason,
        extra={
            "chosen": decision.server_name,
            "mode": decision.mode,
            "workflow_key": workflow_key,
            **summary,
        },
    )


def recent_decisions(limit: int = 20, *, server_id: int | None = None) -> list[BalancerDecision]:
    """The newest decisions first, with their chosen server, for the fleet pages.

    `server_id`: only those that chose that server (its detail page).
    """
    decisions = BalancerDecision.objects.select_related("chosen").order_by("-at", "-pk")
    if server_id is not None:
        decisions = decisions.filter(chosen_id=server_id)
    return list(decisions[:limit])


def note_dispatched(server_id: int, affinity_key: str, now: datetime | None = None) -> bool:
    """Mark that a prompt of `affinity_key` was sent to the server now (affinity, LRU).

    A single UPDATE, so concurrent dispatchers never lose each other's marks to a
    read-modify-write. False if the server has no state row (it was deleted).
    """
    now = now or timezone.now()
    updated = ServerState.objects.filter(server_id=server_id).update(
        last_used_at=now, last_affinity_key=affinity_key, last_affinity_at=now
    )
    return updated == 1
