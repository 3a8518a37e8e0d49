"""Builders for the objects most tests need: users, teams, memberships."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model

from teams.models import Membership, Role, Team

PASSWORD = "correct horse battery staple"
_sequence = itertools.count(1)


def make_team(name: str | None = None) -> Team:
    return Team.objects.create(name=name or f"Team {next(_sequence)}")


def make_user(
    username: str | None = None,
    *,
    team: Team | None = None,
    role: Role = Role.MEMBER,
    staff: bool = False,
    superuser: bool = False,
    active: bool = True,
):
    User = get_user_model()
    user = User.objects.create_user(
        username or f"user{next(_sequence)}",
        password=PASSWORD,
        is_staff=staff or superuser,
        is_superuser=superuser,
        is_active=active,
    )
    if team is not None:
        Membership.objects.create(team=team, user=user, role=role)
    return user
