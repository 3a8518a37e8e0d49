"""Who is calling: an API token (`Authorization: Bearer …`) or the browser's session.

A token makes `request.user` its user, so every service below sees the same
user whichever way the caller signed in. The session is checked for CSRF on
unsafe methods, as every form on the pages is.
"""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja.errors import HttpError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from api.errors import UNAUTHENTICATED, body
from api.tokens import user_for_token


def bearer_token(request: HttpRequest) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for any other."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class BearerToken(HttpBearer):
    def __call__(self, request: HttpRequest):
        # Not ninja's: under DEBUG it logs a header that is not "Bearer …" at ERROR,
        # credentials and all ("Unexpected auth - 'cw_…'", "… 'Basic …'").
        token = bearer_token(request)
        return self.authenticate(request, token) if token else None

    def authenticate(self, request: HttpRequest, token: str):
        user = user_for_token(token.strip())
        if user is None:
            return None
        request.user = user
        return user


class SessionWithCsrf(APIKeyCookie):
    """Django's session; unlike ninja's SessionAuth, a stranger gets 401 (not a CSRF 403)."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if check_csrf(request) is not None:
            raise HttpError(
                403, "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken."
            )
        return user


api_auth = [BearerToken(), SessionWithCsrf()]


def require_staff(request: HttpRequest, action: str) -> None:
    if not request.user.is_staff:
        raise PermissionDenied(f"Only staff can {action}.")


def docs_auth(view):
    """The schema and the docs page need a signed-in user too: a token for tools
    fetching openapi.json, the session (or the login page) for people."""

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            token = bearer_token(request)
            user = user_for_token(token) if token else None
            if user is None:
                if request.path.endswith(".json"):
                    response = JsonResponse(body("not_authenticated", UNAUTHENTICATED), status=401)
                    response["WWW-Authenticate"] = 'Bearer realm="comfyweb"'
                    return response
                return redirect_to_login(request.get_full_path())
            request.user = user
        return view(request, *args, **kwargs)

    return guarded
