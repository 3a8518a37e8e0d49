"""The load balancer (B1-B3, B6): which server runs a task, and why.

`choose()` is a pure function over a snapshot of the fleet and a task's
requirements: no Django, no database, no network, so every rule is tested
without any of them. `servers/fleet.py` builds the snapshot from the database
and records each `Decision`; `servers/requirements.py` reads a task's needs off its graph.

The rules, in order:

1. Candidates are enabled, healthy servers with a free slot
   (`inflight < max_inflight`) that can run the task: every node class and every
   model file the graph names is in the server's catalogue, and the task's tags
   are a subset of the server's. Every other server gets a reason.
2. Earliest predicted finish first, when the task comes with predictions
   (`Requirements.seconds`: its run time on each server, from measured speeds,
   `servers.speed`): a server's finish is the work already on it
   (`ServerSnapshot.backlog`) plus the task's run time there. A full server
   counts too: when it would still finish the task first, the task waits for it
   (`Decision.planned_on`) rather than go to a slower free one — near the end
   of a batch a slow server is left idle instead of being handed the last long
   job. Without predictions, lowest effective load first:
   `(inflight + queue_running + queue_pending) / weight`.
3. Affinity: a server that was sent a prompt with the same affinity key (the same
   model files from the same workflow version, whatever the parameter values)
   within the affinity window keeps it (its models are likely still in VRAM)
   unless it is more loaded than the best candidate by a whole slot or more. A
   slot is one prompt on that server, `1 / weight` in load units, so the
   affinity server wins while
   `load < best_load + 1 / weight`. With equal weights of 1 and whole prompt
   counts this is a tie-break; a fast server (weight 2) keeps its workflow
   while it is less than one prompt (0.5 load) behind. By predicted finish,
   affinity only breaks ties: the measured run times already include the
   model loads that switching costs.
4. Configured priority (lower first), then least recently used (never used
   first), then the lowest id, so equal inputs always give equal answers.

Degraded modes (B6):

* Stale data — no enabled server has a load report within `load_cache_age`,
  so the monitor is down: only the primary is used, if it is not known to be
  unhealthy, has a free slot and is not known to lack anything the task needs.
  Unknown health or capabilities do not stop it (the monitor is the one that
  would have found out).
* Automatic failover off: only the primary is used, under the normal rules.
* Nothing can take the task: mode "waiting", no server, and a reason the
  dashboard shows verbatim. A known-unhealthy primary is never sent work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from servers.requirements import Requirements, has_model

Mode = Literal["balanced", "primary", "waiting"]

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
# Long lists in reasons are cut here; the full sets stay in the snapshot.
_LIST_LIMIT = 5
# How the reason of a server that can run the task but has no free slot starts.
FULL = "full:"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSnapshot:
    """One server as the balancer sees it. Defaults are those of a fresh DB row."""

    id: int
    name: str
    enabled: bool = True
    draining: bool = False  # finishing its prompts before it goes: none new
    health: str = "unknown"
    unhealthy_since: datetime | None = None
    inflight: int = 0
    max_inflight: int = 2
    queue_running: int = 0
    queue_pending: int = 0
    weight: float = 1.0
    priority: int = 100
    is_primary: bool = False
    tags: frozenset[str] = frozenset()
    # None: the monitor has not fetched the catalogue yet.
    node_classes: frozenset[str] | None = None
    model_files: Mapping[str, frozenset[str]] | None = None
    last_used_at: datetime | None = None
    last_affinity_key: str = ""
    last_affinity_at: datetime | None = None
    load_checked_at: datetime | None = None
    # Predicted seconds until the prompts already on it are done (by predicted finish).
    backlog: float = 0.0

    @property
    def load(self) -> float:
        """Effective load: prompts ahead of a new one, scaled by relative speed."""
        return (self.inflight + self.queue_running + self.queue_pending) / self.weight

    @property
    def slot(self) -> float:
        """One prompt on this server, in load units."""
        return 1 / self.weight


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    auto_switch: bool = True
    affinity_window: timedelta = timedelta(seconds=30)
    load_cache_age: timedelta = timedelta(seconds=15)


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """The facts a candidate was ranked on, kept with the decision (B9)."""

    server_id: int
    name: str
    load: float
    slot: float
    inflight: int
    max_inflight: int
    queue_running: int
    queue_pending: int
    weight: float
    priority: int
    affinity: bool
    last_used_at: datetime | None
    # By predicted finish: the task's run time there and when it would be done.
    seconds: float | None = None
    finish: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for BalancerDecision.candidates and log lines."""
        predicted = {}
        if self.finish is not None and self.seconds is not None:
            predicted = {"seconds": round(self.seconds, 3), "finish": round(self.finish, 3)}
        return predicted | {
            "server": self.name,
            "id": self.server_id,
            "load": round(self.load, 4),
            "slot": round(self.slot, 4),
            "inflight": self.inflight,
            "max_inflight": self.max_inflight,
            "queue_running": self.queue_running,
            "queue_pending": self.queue_pending,
            "weight": self.weight,
            "priority": self.priority,
            "affinity": self.affinity,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    server_id: int | None
    server_name: str | None
    mode: Mode
    reason: str
    # Ranked best first; the chosen server, if any, is candidates[0].
    candidates: tuple[Candidate, ...] = ()
    # Server name -> why it was not a candidate.
    excluded: Mapping[str, str] = field(default_factory=dict)
    # Waiting for this full server, predicted to finish the task before any free one.
    planned_on: int | None = None
    planned_finish: float | None = None

    @property
    def waiting(self) -> bool:
        return self.server_id is None


# --- Choosing ---------------------------------------------------------------


def choose(
    servers: Iterable[ServerSnapshot], requirements: Requirements, policy: Policy, now: datetime
) -> Decision:
    """Pick the server for a task, or say why the task must wait."""
    fleet = sorted(servers, key=lambda s: s.id)  # input order never matters
    if not any(s.enabled for s in fleet):
        # Nothing to balance and no primary to fall back on, whatever the mode.
        excluded = {s.name: "disabled" for s in fleet}
        return _waiting(_nobody_can(fleet, requirements, excluded), excluded)
    fresh = _load_is_fresh(fleet, policy, now)
    if not fresh or not policy.auto_switch:
        labels = []
        if not policy.auto_switch:
            labels.append("automatic failover is off")
        if not fresh:
            labels.append(_stale_label(fleet, policy, now))
        return _primary_only(fleet, requirements, now, " and ".join(labels), strict=fresh)

    excluded: dict[str, str] = {}
    candidates: list[Candidate] = []
    full: list[Candidate] = []  # able, but no free slot
    for server in fleet:
        why = _why_not(server, requirements, now, strict=True)
        if why is None:
            candidates.append(_candidate(server, requirements, policy, now))
        else:
            excluded[server.name] = why
            if why.startswith(FULL):
                full.append(_candidate(server, requirements, policy, now))
    later = _sooner_when_free(full, candidates)
    if later is not None:
        return _planned(later, candidates, excluded)
    if not candidates:
        return _waiting(_nobody_can(fleet, requirements, excluded), excluded)
    ranked = _rank(candidates)
    chosen = ranked[0]
    return Decision(
        server_id=chosen.server_id,
        server_name=chosen.name,
        mode="balanced",
        reason=_why_chosen(ranked, len(excluded)),
        candidates=tuple(ranked),
        excluded=excluded,
    )


def single_server(servers: Iterable[ServerSnapshot], error: str) -> Decision:
    """B6's last resort when `choose()` itself failed: the primary alone, if alive with room.

    Deliberately minimal, so that whatever broke the balancer does not break this.
    """
    primary = _primary(sorted(servers, key=lambda s: s.id))
    label = f"balancer failed ({error}); single-server mode"
    if primary is None:
        reason = f"{label}: no enabled primary server"
    elif primary.health == UNHEALTHY:
        reason = f"{label}: primary {primary.name} is unhealthy"
    elif primary.inflight >= primary.max_inflight:
        reason = f"{label}: primary {primary.name} is full"
    else:
        return Decision(
            server_id=primary.id,
            server_name=primary.name,
            mode="primary",
            reason=f"{label}: using the primary {primary.name}",
        )
    return Decision(server_id=None, server_name=None, mode="waiting", reason=reason)


def _sooner_when_free(full: list[Candidate], free: list[Candidate]) -> Candidate | None:
    """The full server predicted to finish the task before every free one, if any."""
    timed = [c for c in full if c.finish is not None]
    if not timed:
        return None
    best = min(timed, key=_order)
    if any(c.finish is None or _order(c) <= _order(best) for c in free):
        return None
    return best


def _planned(server: Candidate, free: list[Candidate], excluded: Mapping[str, str]) -> Decision:
    assert server.finish is not None
    reason = f"waiting for {server.name}: predicted to finish it in {_secs(server.finish)}"
    if free:
        best_free = min(free, key=_order)
        assert best_free.finish is not None
        reason += f", sooner than {best_free.name} (free, {_secs(best_free.finish)})"
    else:
        reason += ", sooner than any other server"
    return Decision(
        server_id=None,
        server_name=None,
        mode="waiting",
        reason=reason,
        excluded=excluded,
        planned_on=server.server_id,
        planned_finish=server.finish,
    )


def _waiting(reason: str, excluded: Mapping[str, str]) -> Decision:
    return Decision(
        server_id=None, server_name=None, mode="waiting", reason=reason, excluded=excluded
    )


def _load_is_fresh(fleet: Sequence[ServerSnapshot], policy: Policy, now: datetime) -> bool:
    # The monitor writes load_checked_at for every enabled server it reaches; when
    # none is recent, it is the monitor that is gone, not the whole fleet.
    return any(
        s.enabled
        and s.load_checked_at is not None
        and now - s.load_checked_at <= policy.load_cache_age
        for s in fleet
    )


def _stale_label(fleet: Sequence[ServerSnapshot], policy: Policy, now: datetime) -> str:
    reports = [s.load_checked_at for s in fleet if s.enabled and s.load_checked_at is not None]
    if not reports:
        return "no load report from the monitor yet"
    age = _age(now - max(reports))
    limit = _age(policy.load_cache_age)
    return f"health data is stale (newest load report {age} old, limit {limit})"


def _primary(fleet: Sequence[ServerSnapshot]) -> ServerSnapshot | None:
    # One primary is the configuration; with several, the admin's priority decides.
    primaries = [s for s in fleet if s.enabled and s.is_primary]
    return min(primaries, key=lambda s: (s.priority, s.id), default=None)


def _primary_only(
    fleet: Sequence[ServerSnapshot],
    requirements: Requirements,
    now: datetime,
    label: str,
    *,
    strict: bool,
) -> Decision:
    primary = _primary(fleet)
    excluded = {
        s.name: "disabled" if not s.enabled else f"not the primary ({label})"
        for s in fleet
        if s is not primary
    }
    if primary is None:
        return _waiting(f"{label}, and no enabled primary server is configured", excluded)
    why = _why_not(primary, requirements, now, strict=strict)
    if why is not None:
        excluded[primary.name] = why
        return _waiting(f"{label}; primary {primary.name}: {why}", excluded)
    return Decision(
        server_id=primary.id,
        server_name=primary.name,
        mode="primary",
        reason=f"{label}: using the primary {primary.name}",
        candidates=(_candidate(primary, requirements, None, now),),
        excluded=excluded,
    )


def _why_not(
    server: ServerSnapshot, requirements: Requirements, now: datetime, *, strict: bool
) -> str | None:
    """Why `server` cannot take the task now, or None if it can.

    Not strict (stale data): unknown health and unknown capabilities are given
    the benefit of the doubt; what is known to be wrong still counts.
    """
    if not server.enabled:
        return "disabled"
    if server.draining:
        return "draining: takes no new prompts"
    if server.weight <= 0:
        return f"misconfigured: weight {server.weight:g} (must be above 0)"
    if server.health == UNHEALTHY:
        return _unhealthy(server, now)
    if strict and server.health != HEALTHY:
        return f"health {server.health}: not checked yet"
    # What it lacks before whether it is busy: a full server frees up, a missing
    # node does not, and the reason should say what will not change by waiting.
    if gaps := _capability_gaps(server, requirements, strict=strict):
        return "; ".join(gaps)
    if server.inflight >= server.max_inflight:
        return f"{FULL} {server.inflight}/{server.max_inflight} in flight"
    return None


def _unhealthy(server: ServerSnapshot, now: datetime) -> str:
    if server.unhealthy_since is None:
        return "unhealthy"
    since = server.unhealthy_since
    return f"unhealthy since {_clock(since, now)} ({_age(now - since)} ago)"


def capability_gaps(server: ServerSnapshot, requirements: Requirements) -> list[str]:
    """What `server` lacks for `requirements`, in the words of the waiting reasons.

    The test the balancer applies, for checks made before a task is queued;
    unknown capabilities are a gap ("capabilities unknown").
    """
    return _capability_gaps(server, requirements, strict=True)


def _capability_gaps(
    server: ServerSnapshot, requirements: Requirements, *, strict: bool
) -> list[str]:
    gaps: list[str] = []
    if server.node_classes is None:
        if strict:
            gaps.append("capabilities unknown")
    elif missing := requirements.node_classes - server.node_classes:
        gaps.append(f"missing nodes: {_listing(missing)}")
    if requirements.model_files:
        if server.model_files is None:
            if strict and server.node_classes is not None:
                gaps.append("model lists unknown")
        elif missing_models := [
            f"{folder}/{name}"
            for folder, name in requirements.model_files
            if not has_model(server.model_files, folder, name)
        ]:
            noun = "model" if len(missing_models) == 1 else "models"
            gaps.append(f"missing {noun} {_listing(missing_models)}")
    if missing_tags := requirements.tags - server.tags:
        gaps.append(f"missing tags: {_listing(missing_tags)}")
    if refusal := requirements.refused_by.get(server.id):
        gaps.append(f"rejects the graph: {refusal}")
    return gaps


def affinity_key(
    last_affinity_key: str, last_affinity_at: datetime | None, window: timedelta, now: datetime
) -> str | None:
    """What a server has affinity for: the affinity key of the prompt it was sent
    last (`Requirements.affinity_key`: its models and workflow), if within `window`.

    The one rule behind both the balancer's choice and the pages' Affinity column.
    """
    if last_affinity_key and last_affinity_at is not None and now - last_affinity_at < window:
        return last_affinity_key
    return None


def _candidate(
    server: ServerSnapshot, requirements: Requirements, policy: Policy | None, now: datetime
) -> Candidate:
    affinity = (
        policy is not None
        and bool(requirements.affinity_key)
        and affinity_key(
            server.last_affinity_key, server.last_affinity_at, policy.affinity_window, now
        )
        == requirements.affinity_key
    )
    seconds = requirements.seconds.get(server.id)
    return Candidate(
        server_id=server.id,
        name=server.name,
        seconds=seconds,
        finish=None if seconds is None else server.backlog + seconds,
        load=server.load,
        slot=server.slot,
        inflight=server.inflight,
        max_inflight=server.max_inflight,
        queue_running=server.queue_running,
        queue_pending=server.queue_pending,
        weight=server.weight,
        priority=server.priority,
        affinity=affinity,
        last_used_at=server.last_used_at,
    )


def _lru(when: datetime | None) -> tuple[int, datetime | None]:
    # Never used sorts before any time; two Nones compare equal on the 0.
    return (0, None) if when is None else (1, when)


def _order(c: Candidate) -> tuple[Any, ...]:
    # Predicted finish when there is one (a candidate without sorts after all that have).
    by_finish = (0, c.finish) if c.finish is not None else (1, 0.0)
    return (*by_finish, c.load, not c.affinity, c.priority, _lru(c.last_used_at), c.server_id)


def _rank(candidates: list[Candidate]) -> list[Candidate]:
    ranked = sorted(candidates, key=_order)
    if ranked[0].finish is not None:
        return ranked  # by predicted finish: affinity is a tie-break (see rule 3)
    best_load = ranked[0].load
    # The first affinity server in load order that is less than one of its own
    # slots behind the best keeps its workflow.
    keeper = next((c for c in ranked if c.affinity and c.load < best_load + c.slot), None)
    if keeper is not None and keeper is not ranked[0]:
        ranked.remove(keeper)
        ranked.insert(0, keeper)
    return ranked


def _why_chosen(ranked: Sequence[Candidate], excluded: int) -> str:
    chosen = ranked[0]
    if len(ranked) == 1:
        others = f" ({excluded} excluded)" if excluded else ""
        return f"{chosen.name}: the only candidate{others}, load {_num(chosen.load)}"
    runner = ranked[1]
    if chosen.finish is not None:
        return _why_sooner(chosen, runner)
    if chosen.affinity and chosen.load > runner.load:
        return (
            f"{chosen.name}: keeps its workflow, load {_num(chosen.load)} is within one slot "
            f"({_num(chosen.slot)}) of the lowest {_num(runner.load)} ({runner.name})"
        )
    if chosen.affinity and chosen.load == runner.load and not runner.affinity:
        tied = f"tied on load {_num(chosen.load)} with {runner.name}"
        return f"{chosen.name}: {tied}, keeps its workflow"
    if chosen.load < runner.load:
        return (
            f"{chosen.name}: lowest load {_num(chosen.load)} "
            f"(next {runner.name} at {_num(runner.load)})"
        )
    tied = f"{chosen.name}: tied on load {_num(chosen.load)} with {runner.name}"
    if chosen.priority < runner.priority:
        return f"{tied}, priority {chosen.priority} before {runner.priority}"
    if _lru(chosen.last_used_at) < _lru(runner.last_used_at):
        return f"{tied} and on priority, least recently used"
    return f"{tied}, priority and last use; lower id"


def _why_sooner(chosen: Candidate, runner: Candidate) -> str:
    assert chosen.finish is not None
    assert chosen.seconds is not None
    ahead = chosen.finish - chosen.seconds
    queued = f" after {_secs(ahead)} of work ahead" if ahead > 0 else ""
    reason = (
        f"{chosen.name}: predicted to finish first, in {_secs(chosen.finish)} "
        f"({_secs(chosen.seconds)} to run{queued})"
    )
    if runner.finish is None:
        return f"{reason}; no prediction for {runner.name}"
    if runner.finish == chosen.finish:
        return f"{reason}; tied with {runner.name}"
    return f"{reason}; next {runner.name} in {_secs(runner.finish)}"


def _nobody_can(
    fleet: Sequence[ServerSnapshot], requirements: Requirements, excluded: Mapping[str, str]
) -> str:
    """One sentence for the dashboard: the most fundamental reason first."""
    if not fleet:
        return "no servers are configured"
    enabled = [s for s in fleet if s.enabled and s.weight > 0]
    if not enabled:
        what = "disabled" if all(s.weight > 0 for s in fleet) else "disabled or misconfigured"
        if len(fleet) == 1:
            return f"the only server, {fleet[0].name}, is {what}"
        return f"all {len(fleet)} servers are {what}"
    absent = _absent_everywhere(enabled, requirements)
    if absent:
        return absent
    healthy = [s for s in enabled if s.health == HEALTHY]
    if not healthy:
        down = sum(s.health == UNHEALTHY for s in enabled)
        some = "" if len(enabled) == len(fleet) else " enabled"
        if down == len(enabled):
            if down == 1:
                return f"the only{some} server, {enabled[0].name}, is unhealthy"
            return f"all {down}{some} servers are unhealthy"
        if down == 0:
            return f"no server has passed a health check yet ({len(enabled)} unknown)"
        return f"no healthy server ({down} unhealthy, {len(enabled) - down} not checked yet)"
    able = [s for s in healthy if not _capability_gaps(s, requirements, strict=True)]
    if not able:
        if all(s.node_classes is None for s in healthy):
            return f"capabilities of the {_count(len(healthy), 'healthy server')} are not known yet"
        details = "; ".join(f"{s.name}: {excluded[s.name]}" for s in healthy[:_LIST_LIMIT])
        if len(healthy) > _LIST_LIMIT:
            details += f"; and {len(healthy) - _LIST_LIMIT} more"
        return f"no healthy server can run it ({details})"
    if len(able) == 1:
        return f"the only server that can run it, {able[0].name}, is {excluded[able[0].name]}"
    if len(able) == len(fleet):
        return f"all {len(able)} servers are full"
    return f"all {len(able)} servers that can run it are full"


def _absent_everywhere(enabled: Sequence[ServerSnapshot], requirements: Requirements) -> str:
    """'no server has the node X' when no enabled server known so far has it."""
    known = [s for s in enabled if s.node_classes is not None]
    unknown = len(enabled) - len(known)
    problems = []
    if known:
        have: set[str] = set().union(*(s.node_classes or () for s in known))
        if nodes := requirements.node_classes - have:
            problems.append(f"the {_plural('node', len(nodes))} {_listing(nodes)}")
    listed = [s.model_files for s in enabled if s.model_files is not None]
    if listed:
        models = [
            f"{folder}/{name}"
            for folder, name in requirements.model_files
            if not any(has_model(files, folder, name) for files in listed)
        ]
        if models:
            problems.append(f"the {_plural('model', len(models))} {_listing(models)}")
    all_tags: set[str] = set().union(*(s.tags for s in enabled))
    if tags := requirements.tags - all_tags:
        problems.append(f"the {_plural('tag', len(tags))} {_listing(tags)}")
    if not problems:
        return ""
    sentence = "no server has " + " or ".join(problems)
    if unknown:
        sentence += f" (capabilities of {_count(unknown, 'server')} not known yet)"
    return sentence


# --- Wording ----------------------------------------------------------------


def _plural(word: str, n: int) -> str:
    return word if n == 1 else f"{word}s"


def _count(n: int, noun: str) -> str:
    return f"{n} {_plural(noun, n)}"


def _listing(items: Iterable[str]) -> str:
    ordered = sorted(items)
    shown = ", ".join(ordered[:_LIST_LIMIT])
    rest = len(ordered) - _LIST_LIMIT
    return f"{shown} and {rest} more" if rest > 0 else shown


def _num(value: float) -> str:
    return f"{value:.3g}"


def _secs(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else _age(timedelta(seconds=seconds))


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{seconds // 60} min"
    if seconds < 36 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _clock(when: datetime, now: datetime) -> str:
    zone = " UTC" if when.utcoffset() == timedelta(0) else ""
    pattern = "%H:%M:%S" if abs(now - when) < timedelta(hours=20) else "%Y-%m-%d %H:%M"
    return when.strftime(pattern) + zone
