"""What the page and the API do to endpoints and secrets, in one place (STYLE: thin views)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction

from webhooks import signing
from webhooks.addresses import validate_url
from webhooks.models import EVENT_TYPES, Endpoint, SubmissionSecret


def require_manager(team, user) -> None:
    if not team.can_manage(user):
        raise PermissionDenied("Only the team's admins manage its webhooks.")


def create_endpoint(team, user, *, url: str, events, description: str = "") -> Endpoint:
    """A new endpoint with a new secret (the caller shows it once). Raises ValidationError."""
    require_manager(team, user)
    chosen = [name for name in EVENT_TYPES if name in set(events)]
    return Endpoint.objects.create(
        team=team,
        url=validate_url(url),
        events=chosen,
        description=description,
        secret=signing.new_secret(),
    )


def set_enabled(endpoint: Endpoint, user, enabled: bool) -> Endpoint:
    """Enable (its failure count starts again) or disable by hand."""
    require_manager(endpoint.team, user)
    endpoint.enabled = enabled
    endpoint.consecutive_failures = 0 if enabled else endpoint.consecutive_failures
    endpoint.disabled_reason = "" if enabled else "Disabled by hand"
    endpoint.save(update_fields=["enabled", "consecutive_failures", "disabled_reason"])
    return endpoint


def delete_endpoint(endpoint: Endpoint, user) -> None:
    require_manager(endpoint.team, user)
    endpoint.delete()


def rotate_submission_secret(team, user) -> str:
    """The team's new secret for per-submission webhooks (the old one stops signing)."""
    require_manager(team, user)
    secret = signing.new_secret()
    with transaction.atomic():
        SubmissionSecret.objects.update_or_create(team=team, defaults={"secret": secret})
    return secret
