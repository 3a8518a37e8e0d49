"""GET /health: the same report as /healthz and the dashboard's health panel (S9)."""

from __future__ import annotations

from typing import Any, Literal

from ninja import Router, Schema
from pydantic import BaseModel

from api.errors import ERRORS
from comfyweb import health

router = Router(tags=["health"])


class ComponentOut(BaseModel):
    # A plain pydantic model: ninja's Schema reads objects through attribute access,
    # which drops the extra keys (a worker's clusters and workers) that "allow" keeps.
    ok: bool
    detail: str = ""
    latency_ms: float | None = None

    model_config = {"extra": "allow"}


class HealthOut(Schema):
    status: Literal["ok", "degraded"]
    components: dict[str, ComponentOut]


@router.get("/health", response={200: HealthOut, **ERRORS}, summary="Health of every component")
def get_health(request) -> dict[str, Any]:
    """`degraded` when any component is down; the status code stays 200 so that
    a client can read which one (load balancers use the public `/healthz`)."""
    return health.collect().as_json()
