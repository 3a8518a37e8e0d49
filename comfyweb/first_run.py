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


def credentials_box(username: str, password: str, url: str) -> str:
    """The one-time credentials as a plain framed message for the terminal.

    Written to stdout by `serve`, never logged: log lines are kept and shipped, and
    a password inside a JSON line among dozens of others is easy to miss.
    """
    lines = [
        "ComfyWeb made its administrator account.",
        "The password is shown only this once: note it now.",
        "",
        f"    username: {username}",
        f"    password: {password}",
        "",
        f"Log in at {url}",
    ]
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])
