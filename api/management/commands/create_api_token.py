"""`python manage.py create_api_token ada --name ci --expires-days 90`: a token for scripts.

Stdout carries the token and nothing else, so `TOKEN=$(manage.py create_api_token ada)`
works; everything else is an error on stderr.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from api.tokens import issue_token


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = "Issue an API token for USERNAME and print it (only it) on stdout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="Command line", help="What uses the token.")
        parser.add_argument(
            "--expires-days",
            type=_positive_int,
            metavar="N",
            help="Expire after N days (default: never).",
        )

    def handle(
        self, *args: Any, username: str, name: str, expires_days: int | None, **options: Any
    ) -> None:
        User = get_user_model()
        user = User._default_manager.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive: its tokens would be refused.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        _token, raw = issue_token(user, name, expires_at=expires_at)
        self.stdout.write(raw)
