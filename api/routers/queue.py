"""Our queue (S7): its numbers, and pause/resume/clear for everyone (staff) or one team
(its admins), with the same rules as the dashboard's buttons."""

from __future__ import annotations

from typing import Any

from ninja import Router, Schema
from pydantic import Field

from api.errors import ERRORS
from api.schemas import Id
from tasks import access, queue
from tasks.models import QueuePause
from teams.models import Team

router = Router(tags=["queue"])


class QueueOut(Schema):
    paused: bool = Field(description="The whole queue is paused.")
    paused_teams: list[int] = Field(description="Teams of yours whose queue is paused.")
    counts: dict[str, int] = Field(description="Tasks by status.")
    by_priority: dict[str, int] = Field(description="Pending tasks by priority.")
    wait_seconds: dict[str, float | None]
    throughput_per_minute: float


class ClearedOut(QueueOut):
    canceled: int


class ScopeIn(Schema):
    team: Id | None = Field(None, description="One team's queue; omit for everyone's (staff).")


def queue_json(user) -> dict[str, Any]:
    teams = list(Team.objects.for_user(user).values_list("pk", flat=True))
    stats = queue.stats(None if user.is_staff else teams)
    paused_teams = QueuePause.objects.filter(team_id__in=teams).values_list("team_id", flat=True)
    return {
        "paused": stats["paused"],
        "paused_teams": sorted(paused_teams),
        "counts": stats["counts"],
        "by_priority": stats["by_priority"],
        "wait_seconds": stats["wait_seconds"],
        "throughput_per_minute": stats["throughput_per_minute"],
    }


@router.get("/queue", response={200: QueueOut, **ERRORS}, summary="Queue state and numbers")
def get_queue(request) -> dict[str, Any]:
    """Staff see every team's numbers; others their teams'."""
    return queue_json(request.user)


@router.post("/queue/pause", response={200: QueueOut, **ERRORS}, summary="Pause dispatching")
def pause(request, payload: ScopeIn | None = None) -> dict[str, Any]:
    """Stops new dispatches; what is on a server runs on."""
    team = access.queue_scope_for(request.user, payload.team if payload else None)
    queue.pause(team=team, by=request.user)
    return queue_json(request.user)


@router.post("/queue/resume", response={200: QueueOut, **ERRORS}, summary="Resume dispatching")
def resume(request, payload: ScopeIn | None = None) -> dict[str, Any]:
    team = access.queue_scope_for(request.user, payload.team if payload else None)
    queue.resume(team=team, by=request.user)
    return queue_json(request.user)


@router.post("/queue/clear", response={200: ClearedOut, **ERRORS}, summary="Cancel pending tasks")
def clear(request, payload: ScopeIn | None = None) -> dict[str, Any]:
    team = access.queue_scope_for(request.user, payload.team if payload else None)
    canceled = queue.clear(team=team, by=request.user)
    return queue_json(request.user) | {"canceled": canceled}
