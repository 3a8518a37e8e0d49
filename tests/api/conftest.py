"""The API tests' world: a team with one user per role, a stranger, staff and
nobody, each a `Caller` that sends JSON with the user's API token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from teams.models import Role
from tests.api.callers import Caller, caller_for
from tests.factories import make_team, make_user


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
