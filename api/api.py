"""The API v1 object: its routers, authentication, error handlers and docs."""

from __future__ import annotations

from ninja import NinjaAPI

from api.auth import api_auth, docs_auth
from api.errors import install_handlers
from api.parser import JsonObjectParser
from api.routers import (
    batches,
    docker_hosts,
    downloads,
    events,
    health,
    local_instances,
    outputs,
    pools,
    queue,
    servers,
    tasks,
    templates,
    usage,
    webhooks,
    workflows,
)

DESCRIPTION = """
Drive ComfyWeb from scripts and pipelines.

Authenticate with `Authorization: Bearer <token>`: create a token on your
account page, or with `python manage.py create_api_token USERNAME`. A signed-in
browser session works too (send the CSRF token as `X-CSRFToken` on writes).

Every error is JSON: `{"error": {"type", "message", "details"}}`. Objects of
teams you are not in are 404, like objects that do not exist.

Retry creating POSTs safely with an `Idempotency-Key` header: the same key
within 24 hours gets the first answer again and creates nothing more.
"""

api = NinjaAPI(
    title="ComfyWeb API",
    version="1",
    description=DESCRIPTION,
    auth=api_auth,
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
    docs_decorator=docs_auth,
    parser=JsonObjectParser(),
)
install_handlers(api)
ROUTERS = (
    health,
    servers,
    docker_hosts,
    pools,
    local_instances,
    downloads,
    workflows,
    templates,
    tasks,
    batches,
    events,
    outputs,
    queue,
    webhooks,
    usage,
)
for module in ROUTERS:
    api.add_router("", module.router)
