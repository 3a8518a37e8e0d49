"""URLs for tests/comfyweb/test_log_redaction.py: the project's, plus a page and an
API endpoint that fail with the request's headers in their exception (a 500)."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import include, path
from ninja import NinjaAPI

from api.auth import api_auth
from api.errors import install_handlers
from api.urls import _own_login


class UpstreamRefused(RuntimeError):
    pass


def _fail(request: HttpRequest):
    # What a careless error message does: carry everything the view had in hand.
    raise UpstreamRefused(f"refused with headers {dict(request.headers)!r} meta {request.META!r}")


failing_api = NinjaAPI(urls_namespace="log-redaction-test", auth=api_auth)
install_handlers(failing_api)
failing_api.get("/fail")(_fail)

urlpatterns = [
    path("test-fail/", _fail),
    path("test-api/", (_own_login(failing_api.urls[0]), *failing_api.urls[1:])),
    path("", include("comfyweb.urls")),
]
