"""What a brand-new installation needs before anyone can log in."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.db import transaction

from teams.models import Membership, Role, Team

ADMIN_USERNAME = "admin"
DEFAULT_TEAM = "Default team"


@transaction.atomic
def create_initial_admin() -> tuple[str, str] | None:
    """Create the first superuser and a team for it, once; return its credentials.

    Returns None when any superuser exists already, so the password is only
    ever shown on the run that made it.
    """
    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return None
    password = secrets.token_urlsafe(12)
    admin = User.objects.create_superuser(ADMIN_USERNAME, email="", password=password)
    team, _ = Team.objects.get_or_create(name=DEFAULT_TEAM)
    Membership.objects.get_or_create(team=team, user=admin, defaults={"role": Role.ADMIN})
    return ADMIN_USERNAME, password
