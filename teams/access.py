"""The one rule every page and API endpoint applies after its lookup: a visible
object the user's role may not change is a PermissionDenied (403). Each app's
`access` module looks its objects up (a 404 for another team's, as for missing ones)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied


def require(allowed: bool, action: str) -> None:
    if not allowed:
        raise PermissionDenied(f"Your role in this team does not allow you to {action}.")
