"""Fixtures for the API tests: a team with one user per role, a stranger, staff,
and `call()` which sends JSON with a user's API token."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from api.tokens import issue_token
from teams.models import Role
from tests.factories import make_team, make_user


@dataclass
class Caller:
    """Sends API requests as one user (None: no credentials at all)."""

    client: Client
    token: str | None

    def __call__(self, method: str, path: str, body: Any = None, **query: Any):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {self.token}"} if self.token else {}
        url = path if path.startswith("/") else f"/api/v1/{path}"
        if method.upper() == "GET":
            return self.client.get(url, query, **headers)
        data = "" if body is None else json.dumps(body)
        return getattr(self.client, method.lower())(
            url, data=data, content_type="application/json", **headers
        )


def caller_for(user) -> Caller:
    token = issue_token(user, "tests")[1] if user is not None else None
    return Caller(Client(), token)


@dataclass
class World:
    team: Any
    other_team: Any
    admin: Caller
    member: Caller
    viewer: Caller
    stranger: Caller  # a member of the other team only
    staff: Caller
    anonymous: Caller
    users: dict[str, Any]


@pytest.fixture
def world(db) -> World:
    team, other = make_team("Studio"), make_team("Elsewhere")
    users = {
        "admin": make_user("ada", team=team, role=Role.ADMIN),
        "member": make_user("max", team=team, role=Role.MEMBER),
        "viewer": make_user("vic", team=team, role=Role.VIEWER),
        "stranger": make_user("sam", team=other, role=Role.ADMIN),
        "staff": make_user("stef", staff=True),
    }
    return World(
        team=team,
        other_team=other,
        admin=caller_for(users["admin"]),
        member=caller_for(users["member"]),
        viewer=caller_for(users["viewer"]),
        stranger=caller_for(users["stranger"]),
        staff=caller_for(users["staff"]),
        anonymous=caller_for(None),
        users=users,
    )


def error_of(response) -> dict[str, Any]:
    """The error object of an error response (and proof that it has the shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"type", "message", "details"} <= set(body["error"]), body
    return body["error"]
