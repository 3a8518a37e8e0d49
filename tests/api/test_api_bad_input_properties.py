"""Property: whatever comes in, the API answers 2xx, or 4xx with the error envelope.

Hypothesis generates what schemathesis (test_api_schema.py) does not, because
no schema describes it: JSON the API cannot store (NaN, Infinity, 1e400), huge
integers, deep nesting, wrong types in every field, bodies that are not JSON
and headers (Content-Type, Authorization, Idempotency-Key) and query strings
of any text. Bounded: 50 examples per operation, run in well under a minute.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import empty_save_template, trivial_graph

pytestmark = pytest.mark.django_db

BOUNDED = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# -- what is generated ----------------------------------------------------------------

# Text a browser or a script could put in a URL (no lone surrogates: they have no UTF-8).
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
huge_ints = st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**40, 10**400, -(10**400)])
numbers = st.integers() | huge_ints | st.floats() | st.sampled_from([1e308, -1e308, 5e-324])
scalars = st.none() | st.booleans() | numbers | any_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
deep_nesting = st.integers(min_value=30, max_value=3000).map(lambda n: "[" * n + "]" * n)
# Numbers Python's json reads but PostgreSQL's jsonb cannot store.
unstorable = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])


def mostly(usual: st.SearchStrategy, rarely: st.SearchStrategy) -> st.SearchStrategy:
    """`usual` four times in five: garbage headers must not hide what bodies find."""
    return st.integers(0, 4).flatmap(lambda n: rarely if n == 0 else usual)


def _text(value: Any) -> str:
    # json.dumps writes NaN, Infinity and -Infinity as such: Python's json reads them.
    return json.dumps(value)


def _with_input(node: str, name: str, value: Any) -> dict[str, Any]:
    graph = trivial_graph(seed=1)
    graph[node]["inputs"][name] = value
    return graph


graph_inputs = st.builds(
    _with_input,
    st.sampled_from(["2", "3"]),
    st.sampled_from(["width", "height", "seed", "steps", "cfg", "denoise", "latent_image"]),
    json_values,
)
submit_fields = st.fixed_dictionaries(
    {},
    optional={
        "workflow": json_values,
        "version": json_values,
        "template": json_values,
        "params": json_values,
        "graph": json_values | graph_inputs,
        "team": json_values,
        "priority": json_values,
        "count": json_values,
        "sweep": json_values,
        "description": json_values,
    },
)


def _graph_holding(node: str, name: str, number: str) -> str:
    """A submission whose graph has `number` written as is (NaN, 1e400) at one input."""
    marker = "__number__"
    return _text({"graph": _with_input(node, name, marker)}).replace(f'"{marker}"', number)


submit_bodies = (
    submit_fields.map(_text)
    | json_values.map(_text)
    | graph_inputs.map(lambda graph: _text({"graph": graph}))
    | st.builds(_graph_holding, st.sampled_from(["2", "3"]), st.just("width"), unstorable)
    | deep_nesting
    | deep_nesting.map(lambda nested: f'{{"graph": {nested}}}')
    | st.binary(max_size=40).map(lambda raw: raw.decode("latin-1"))
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/octet-stream",
    ]
) | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
# What an HTTP server hands on: latin-1 text without line breaks.
header_text = st.text(
    st.characters(max_codepoint=255, exclude_characters="\r\n", exclude_categories=("Cs",)),
    max_size=40,
)
# None: the caller's own valid token, or no key.
authorizations = mostly(st.none(), header_text | header_text.map(lambda text: f"Bearer {text}"))
idempotency_keys = mostly(
    st.none() | st.uuids().map(str), header_text | st.text(min_size=250, max_size=300)
)
query_values = any_text | st.integers().map(str) | huge_ints.map(str)


# -- what is checked --------------------------------------------------------------------


def assert_answered_well(response) -> None:
    status = response.status_code
    assert 200 <= status < 300 or 400 <= status < 500, (status, response.content[:500])
    body = response.json()
    if status >= 400:
        assert set(body) == {"error"}, body
        assert {"type", "message", "details"} <= set(body["error"]), body


def headers_for(world, authorization: str | None, key: str | None = None) -> dict[str, str]:
    headers = {"HTTP_AUTHORIZATION": authorization or f"Bearer {world.member.token}"}
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return headers


@pytest.fixture
def template(world):
    return empty_save_template(world.team)


# -- the operations ---------------------------------------------------------------------


@BOUNDED
@given(
    body=submit_bodies,
    content_type=content_types,
    authorization=authorizations,
    key=idempotency_keys,
    data=st.data(),
)
def test_submitting_anything_is_answered_with_2xx_or_the_error_envelope(
    world, template, body, content_type, authorization, key, data
):
    if data.draw(st.booleans(), label="names the template"):
        fields = data.draw(submit_fields, label="fields") | {"template": template.pk}
        body = _text(fields)
    response = world.member.client.post(
        "/api/v1/tasks",
        data=body,
        content_type=content_type,
        **headers_for(world, authorization, key),
    )
    assert_answered_well(response)


@BOUNDED
@given(
    path=st.sampled_from(["workflows", "templates"]),
    query=st.dictionaries(
        st.sampled_from(["q", "team", "workflow"]) | any_text, query_values, max_size=3
    ),
    authorization=authorizations,
)
def test_listing_and_searching_workflows_and_templates_is_answered_well(
    world, path, query, authorization
):
    response = world.member.client.get(
        f"/api/v1/{path}", query, **headers_for(world, authorization)
    )
    assert_answered_well(response)


@BOUNDED
@given(
    query=st.dictionaries(
        st.sampled_from(["status", "batch", "priority", "team", "page", "page_size"]) | any_text,
        query_values | st.sampled_from(["pending", "completed", "urgent", "0", "-1", ""]),
        max_size=4,
    ),
    authorization=authorizations,
)
def test_filtering_the_task_list_is_answered_well(world, query, authorization):
    response = world.member.client.get("/api/v1/tasks", query, **headers_for(world, authorization))
    assert_answered_well(response)


@BOUNDED
@given(
    query=st.dictionaries(any_text, query_values, max_size=3),
    body=json_values.map(_text) | deep_nesting | unstorable.map(lambda n: f'{{"team": {n}}}'),
    content_type=content_types,
    authorization=authorizations,
)
def test_the_queue_is_answered_well(world, query, body, content_type, authorization):
    headers = headers_for(world, authorization)
    assert_answered_well(world.admin.client.get("/api/v1/queue", query, **headers))
    resume = world.admin.client.post(
        "/api/v1/queue/resume", data=body, content_type=content_type, **headers
    )
    assert_answered_well(resume)
