"""NUL characters are refused with a 400 wherever they come in, never a 500.

PostgreSQL stores no NUL in text or jsonb: before `comfyweb.nul` a search for
"a%00" or a graph with "\\u0000" in a prompt ended in a DataError.
"""

from __future__ import annotations

import pytest

from comfyweb.nul import find_nul
from tasks.models import Task
from tests.api.callers import error_of
from tests.factories import make_user, trivial_graph
from workflows.models import Workflow

pytestmark = pytest.mark.django_db


def graph_with_nul() -> dict:
    graph = trivial_graph()
    graph["4"]["inputs"]["text"] = "a cat\x00"
    return graph


def test_an_escaped_backslash_before_u0000_is_no_nul(world):
    graph = trivial_graph()
    graph["4"]["inputs"]["text"] = "C:\\u0000 is a folder"  # a backslash, then "u0000"
    assert world.member("POST", "tasks", {"graph": graph}).status_code == 201


def test_find_nul_names_where_the_first_one_is():
    assert find_nul({"a": [1, {"b": "x\x00"}]}) == "a.1.b"
    assert find_nul({"k\x00": 1}) == "k\\u0000"
    assert find_nul({"a": ["fine", 2, None, True]}) is None


@pytest.mark.parametrize("path", ["workflows", "templates", "tasks", "servers", "queue"])
def test_a_nul_in_an_api_query_is_a_400_with_the_error_envelope(world, path):
    response = world.member("GET", path, q="a\x00b")
    assert response.status_code == 400
    assert "NUL" in error_of(response)["message"]


@pytest.mark.parametrize("url", ["/workflows/?q=a%00", "/tasks/?q=%00", "/gallery/?x%00=1"])
def test_a_nul_in_a_page_query_is_a_400(client, world, url):
    client.force_login(world.users["member"])
    response = client.get(url)
    assert response.status_code == 400
    assert b"NUL" in response.content


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("workflows", lambda: {"name": "w", "graph": graph_with_nul()}),
        ("tasks", lambda: {"graph": graph_with_nul()}),
        ("tasks", lambda: {"graph": trivial_graph() | {"9\x00": {"class_type": "SaveImage"}}}),
    ],
)
def test_a_nul_in_an_api_body_is_a_400_naming_where_and_nothing_is_saved(world, path, body):
    response = world.member("POST", path, body())
    assert response.status_code == 400
    assert "NUL" in error_of(response)["message"]
    assert not Workflow.objects.exists()
    assert not Task.objects.exists()


def test_a_workflow_form_with_a_nul_in_its_graph_is_a_form_error(client, world):
    import json

    client.force_login(make_user(team=world.team))
    response = client.post(
        "/workflows/new/",
        {"name": "w", "team": world.team.pk, "graph_text": json.dumps(graph_with_nul())},
    )
    assert response.status_code in (200, 400)
    assert b"NUL" in response.content
    assert not Workflow.objects.exists()
