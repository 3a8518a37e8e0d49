"""Signed webhooks (issue 18 item 1): a team's endpoints, their deliveries, redeliver.

Everyone in a team reads its endpoints and delivery logs; its admins (and staff)
add, delete and redeliver. An endpoint's `secret` is in the answer to its creation
only. Objects of teams you are not in are 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from pydantic import Field

from api import idempotency
from api.errors import ERRORS, invalid
from api.idempotency import IdempotencyKey
from api.schemas import Id, PathId
from teams.models import Team
from webhooks import delivery, endpoints
from webhooks.models import EVENT_TYPES, Delivery, Endpoint

router = Router(tags=["webhooks"])

EventName = Literal["task.completed", "task.failed", "task.canceled", "batch.completed"]
DELIVERIES_SHOWN = 100


class EndpointIn(Schema):
    url: str = Field(max_length=2048, description="http or https; a public address")
    events: list[EventName] = Field(default_factory=lambda: list(EVENT_TYPES), min_length=1)
    team: Id | None = Field(None, description="Needed when you are in several teams")
    description: str = Field("", max_length=200)


class EndpointOut(Schema):
    id: int
    team: int
    url: str
    events: list[str]
    description: str
    enabled: bool
    consecutive_failures: int
    disabled_reason: str
    created_at: datetime


class EndpointCreatedOut(EndpointOut):
    secret: str = Field(description="whsec_…: shown in this answer only")


class AttemptOut(Schema):
    at: datetime
    status_code: int | None
    latency_ms: float | None
    response_excerpt: str
    error: str
    manual: bool


class DeliveryOut(Schema):
    id: int
    webhook_id: str = Field(description="The webhook-id header: the same on every try")
    event_type: str
    url: str
    state: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str
    attempt_log: list[AttemptOut]


def endpoint_json(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.pk,
        "team": endpoint.team_id,
        "url": endpoint.url,
        "events": endpoint.events,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "consecutive_failures": endpoint.consecutive_failures,
        "disabled_reason": endpoint.disabled_reason,
        "created_at": endpoint.created_at,
    }


def delivery_json(found: Delivery) -> dict[str, Any]:
    return {
        "id": found.pk,
        "webhook_id": found.message_id,
        "event_type": found.event_type,
        "url": found.url,
        "state": found.state,
        "attempts": found.attempts,
        "next_attempt_at": found.next_attempt_at,
        "created_at": found.created_at,
        "delivered_at": found.delivered_at,
        "last_status_code": found.last_status_code,
        "last_error": found.last_error,
        "attempt_log": [
            {
                "at": a.at,
                "status_code": a.status_code,
                "latency_ms": a.latency_ms,
                "response_excerpt": a.response_excerpt,
                "error": a.error,
                "manual": a.manual,
            }
            for a in found.attempt_log.all()
        ],
    }


@router.get("/webhooks", response={200: list[EndpointOut], **ERRORS}, summary="List webhooks")
def list_webhooks(request) -> list[dict[str, Any]]:
    return [endpoint_json(e) for e in Endpoint.objects.for_user(request.user)]


@router.post(
    "/webhooks",
    response={201: EndpointCreatedOut, **ERRORS, **idempotency.ERRORS},
    summary="Add a webhook (team admins)",
    description="Its `secret` (Standard Webhooks, `whsec_`…) is in this answer only.",
)
def create_webhook(request, payload: EndpointIn, idempotency_key: IdempotencyKey = None):
    return idempotency.once(
        request, idempotency_key, EndpointCreatedOut, lambda: _create(request, payload)
    )


def _create(request, payload: EndpointIn) -> Status:
    team = _team(request, payload.team)
    try:
        made = endpoints.create_endpoint(
            team,
            request.user,
            url=payload.url,
            events=payload.events,
            description=payload.description,
        )
    except ValidationError as error:
        raise invalid(("url", message) for message in error.messages) from None
    return Status(201, endpoint_json(made) | {"secret": made.secret})


@router.delete("/webhooks/{webhook_id}", response={204: None, **ERRORS}, summary="Delete a webhook")
def delete_webhook(request, webhook_id: PathId):
    endpoint = get_object_or_404(Endpoint.objects.for_user(request.user), pk=webhook_id)
    endpoints.delete_endpoint(endpoint, request.user)
    return Status(204, None)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response={200: list[DeliveryOut], **ERRORS},
    summary="A webhook's delivery log, newest first",
)
def list_deliveries(request, webhook_id: PathId) -> list[dict[str, Any]]:
    endpoint = get_object_or_404(Endpoint.objects.for_user(request.user), pk=webhook_id)
    found = endpoint.deliveries.prefetch_related("attempt_log")[:DELIVERIES_SHOWN]
    return [delivery_json(d) for d in found]


@router.post(
    "/webhooks/deliveries/{delivery_id}/redeliver",
    response={200: DeliveryOut, **ERRORS},
    summary="Send a delivery again now (team admins)",
    description="Same webhook-id and payload; retried on failure for a fresh retry window.",
)
def redeliver(request, delivery_id: PathId) -> dict[str, Any]:
    found = get_object_or_404(Delivery.objects.for_user(request.user), pk=delivery_id)
    endpoints.require_manager(found.team, request.user)
    return delivery_json(delivery.redeliver(found))


def _team(request, team_id: int | None) -> Team:
    teams = Team.objects.for_user(request.user)
    if team_id is not None:
        return get_object_or_404(teams, pk=team_id)
    mine = list(teams[:2])
    if len(mine) != 1:
        raise invalid([("team", "Name the team: you are in several teams (or none).")])
    return mine[0]
