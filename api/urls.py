from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from api import views
from api.api import api


def _own_login(patterns: list[URLPattern | URLResolver]) -> list[URLPattern | URLResolver]:
    """The API answers strangers itself (401 JSON, not a redirect to the login page),
    so its views are exempt from LoginRequiredMiddleware; each operation requires
    authentication through `api_auth` instead, and the docs page through `docs_auth`."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            _own_login(pattern.url_patterns)
        else:
            pattern.callback.login_required = False
    return patterns


# Not `app_name`: Django's include() would read it as this module's namespace.
_patterns, _app, _namespace = api.urls
urlpatterns = [
    path("api/v1/", (_own_login(_patterns), _app, _namespace)),
    # The account page's token views: pages, behind the login like every page.
    path("account/tokens/", views.token_create, name="account_token_create"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke, name="account_token_revoke"),
]
