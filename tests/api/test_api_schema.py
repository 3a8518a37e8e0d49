"""Generated requests against the published OpenAPI schema (schemathesis + hypothesis).

Every operation gets requests built from its schema — valid ones and, in the
coverage phase, deliberately wrong ones — sent in process through Django's WSGI
handler with a staff member's token. No request may end in a 5xx, and every
response must match the status codes, content types and bodies the schema
documents (so the document a client generates code from is the truth).
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api.api import api
from api.tokens import issue_token
from servers.probe import ProbeResult
from teams.models import Role
from tests.factories import make_team, make_template, make_user, make_workflow
from workflows.validation import CatalogueUnavailable

# Not the event stream: it is async and lasts as long as its task (no WSGI handler
# and no test transaction suit it); tests/api/test_api_task_events.py drives it
# through the ASGI application instead.
schema = schemathesis.openapi.from_dict(api.get_openapi_schema(path_prefix="/api/v1")).exclude(
    path_regex=r"/events$"
)
schema.app = get_wsgi_application()

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture
def token(db, monkeypatch, settings, tmp_path):
    # Django's test client keeps the test's transaction open by not closing the
    # connection after each request; calling the WSGI handler directly must too.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    monkeypatch.setattr(
        "tasks.submission._submitted", lambda team_id: None
    )  # no dispatch worker here
    # Generated servers have generated URLs: nothing here may reach them (loopback only).
    for module in ("api.routers.workflows", "workflows.forms.workflows"):
        monkeypatch.setattr(f"{module}.fetch_catalogue", _no_catalogue)
    monkeypatch.setattr("api.routers.servers.probe", _unreachable)
    monkeypatch.setattr("api.routers.docker_hosts.check_host", lambda host: host)
    # Downloads (#14): generated ones are never fetched, and any file goes to a tmp library.
    monkeypatch.setattr("library.requests.queue_download", lambda download_id: True)
    settings.COMFYWEB_MODELS_DIR = tmp_path / "models"
    team = make_team("Schema")
    user = make_user("schema-staff", team=team, role=Role.ADMIN, staff=True)
    workflow = make_workflow(team, "schema workflow")
    make_template(workflow.current_version)
    yield issue_token(user, "schemathesis")[1]
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _no_catalogue(server):
    raise CatalogueUnavailable(f"{server.name}: not contacted in this test")


async def _unreachable(server, fleet):
    return ProbeResult(False, None, None, None, "not contacted in this test")


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_generated_requests_get_no_5xx_and_documented_responses(case, token):
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
