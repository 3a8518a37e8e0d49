from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import PASSWORD, make_user

# Views that must work without a session: the login form itself, the admin's
# own login, the health probe that load balancers call, and the Prometheus scrape
# (its own gate instead of a session: a token or an allowed network, loopback here).
PUBLIC = {"login", "healthz", "admin:login", "favicon", "metrics"}

CONVERTER_SAMPLES = {"int": "1", "str": "x", "slug": "x", "path": "x/y", "uuid": "0" * 32}


def _walk(patterns, prefix="", namespace=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            ns = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), ns)
        elif isinstance(pattern, URLPattern):
            yield f"{namespace}{pattern.name or ''}", prefix + str(pattern.pattern)


def _sample_url(route: str) -> str:
    route = route.lstrip("^").rstrip("$").replace("\\Z", "")
    route = re.sub(r"<(?:(\w+):)?\w+>", lambda m: CONVERTER_SAMPLES[m.group(1) or "str"], route)
    route = re.sub(r"\(\?P<\w+>[^)]*\)", "x", route)
    return "/" + route


def all_routes():
    return sorted(set(_walk(get_resolver().url_patterns)))


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "route"), all_routes())
def test_every_page_requires_login(client, name, route):
    response = client.get(_sample_url(route))
    if name in PUBLIC:
        assert response.status_code in {200, 301, 503}, f"{route} answered {response.status_code}"
        return
    if name.startswith("api:") and name != "api:openapi-view":
        # The API answers strangers with 401 JSON itself; tests/api/test_api_auth.py
        # sends every method of every operation. Its bare root is a 404 for everyone.
        allowed = {401, 405} if name != "api:api-root" else {404}
        assert response.status_code in allowed, f"{route} answered {response.status_code}"
        return
    assert response.status_code == 302, f"{route} answered {response.status_code} to a stranger"
    assert response["Location"].startswith(("/login/", "/admin/login/"))


@pytest.mark.django_db
def test_login_then_logout(client):
    user = make_user("ada")
    response = client.post("/login/", {"username": "ada", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").context["user"] == user

    response = client.post("/logout/")
    assert response.status_code == 302
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_wrong_password_shows_an_error_and_no_session(client):
    make_user("ada")
    response = client.post("/login/", {"username": "ada", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert client.get("/").status_code == 302


@pytest.mark.django_db
def test_logout_needs_a_post_so_links_cannot_log_people_out(client):
    client.force_login(make_user())
    assert client.get("/logout/").status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "current"),
    [("/", "Dashboard"), ("/generate/", "Generate"), ("/workflows/", "Generate"),
     ("/templates/", "Generate"), ("/tasks/", "Tasks"), ("/gallery/", "Gallery"),
     ("/servers/", "Servers")],
)  # fmt: skip
def test_navigation_highlights_only_the_current_section(client, path, current):
    client.force_login(make_user())
    active = [item["label"] for item in client.get(path).context["navigation"] if item["active"]]
    assert active == [current]
