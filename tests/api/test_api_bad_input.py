"""Bad input is a 4xx with the error envelope (pages: a plain 4xx), never a 500.

Before the request guard, a body over the upload limit was Django's HTML 400
page, and NaN/Infinity in a graph (Python's json reads them, PostgreSQL's jsonb
refuses them) ended in a DataError: a 500.
"""

from __future__ import annotations

import json

import pytest

from tasks.models import Task
from tests.api.callers import error_of
from tests.factories import make_template, make_workflow, trivial_graph
from workflows.models import ParameterType, Workflow

pytestmark = pytest.mark.django_db
FIVE_MB = 5 * 1024 * 1024


def send(caller, path: str, text: str, content_type: str = "application/json"):
    return caller.client.post(
        f"/api/v1/{path}",
        data=text,
        content_type=content_type,
        HTTP_AUTHORIZATION=f"Bearer {caller.token}",
    )


def graph_text_with(value: str) -> str:
    """A graph's JSON whose latent width is `value`, written as is (e.g. NaN)."""
    return json.dumps(trivial_graph(seed=1)).replace('"width": 64', f'"width": {value}')


def test_a_body_over_the_upload_limit_is_a_413_with_the_error_envelope(world):
    body = json.dumps({"graph": trivial_graph(), "description": "x" * FIVE_MB})
    response = send(world.member, "tasks", body)
    assert response.status_code == 413
    assert error_of(response)["type"] == "too_large"
    assert "MB" in error_of(response)["message"]
    assert not Task.objects.exists()


def test_a_page_post_over_the_upload_limit_is_a_plain_413(client, world):
    client.force_login(world.users["member"])
    response = client.post(
        "/workflows/new/", {"name": "w", "team": world.team.pk, "graph_text": "x" * FIVE_MB}
    )
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/plain")
    assert not Workflow.objects.exists()


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
@pytest.mark.parametrize("path", ["tasks", "workflows"])
def test_a_number_json_cannot_store_is_a_400_and_nothing_is_saved(world, value, path):
    body = f'{{"name": "w", "graph": {graph_text_with(value)}}}'
    if path == "tasks":
        body = f'{{"graph": {graph_text_with(value)}}}'
    response = send(world.member, path, body)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["type"] == "validation_error"
    assert value in error["message"]
    assert "store" in error["message"]
    assert not Task.objects.exists()
    assert not Workflow.objects.exists()


def test_nan_is_refused_whatever_content_type_the_body_claims(world):
    response = send(world.member, "tasks", f'{{"graph": {graph_text_with("NaN")}}}', "text/plain")
    assert response.status_code == 400
    error_of(response)
    assert not Task.objects.exists()


def test_json_nested_too_deeply_is_a_400(world):
    body = '{"graph": ' + "[" * 5000 + "]" * 5000 + "}"
    response = send(world.member, "tasks", body)
    assert response.status_code == 400
    assert "nested too deeply" in error_of(response)["message"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e400"])
def test_a_pasted_graph_with_a_number_json_cannot_store_is_a_form_error(client, world, value):
    client.force_login(world.users["member"])
    response = client.post(
        "/workflows/new/",
        {"name": "w", "team": world.team.pk, "graph_text": graph_text_with(value)},
    )
    assert response.status_code in (200, 400)
    assert f"{value} is not a JSON number" in response.content.decode() or (
        f"number {value} is too large to store" in response.content.decode()
    )
    assert not Workflow.objects.exists()


def test_a_pasted_graph_nested_too_deeply_is_a_form_error(client, world):
    client.force_login(world.users["member"])
    response = client.post(
        "/workflows/new/",
        {"name": "w", "team": world.team.pk, "graph_text": "[" * 5000 + "]" * 5000},
    )
    assert response.status_code in (200, 400)
    assert b"nested too deeply" in response.content
    assert not Workflow.objects.exists()


@pytest.mark.parametrize(
    "value", [10**400, "1e400", "NaN", "-inf"], ids=["10**400", "1e400", "NaN", "-inf"]
)
def test_a_float_parameter_that_is_no_finite_number_is_a_400_naming_it(world, value):
    version = make_workflow(world.team, graph=trivial_graph(seed=1)).current_version
    template = make_template(
        version,
        parameters=[
            {"name": "cfg", "node_id": "3", "input_name": "cfg", "type": ParameterType.FLOAT}
        ],
    )
    body = json.dumps({"template": template.pk, "params": {"cfg": value}})
    response = send(world.member, "tasks", body)
    assert response.status_code == 400, response.content
    fields = error_of(response)["details"]["fields"]
    assert [f["field"] for f in fields] == ["params.cfg"]
    assert not Task.objects.exists()
