"""Every API operation refuses strangers with a JSON 401, and accepts a token or a session."""

from __future__ import annotations

import pytest
from django.test import Client

from api.api import api
from api.models import ApiToken
from api.tokens import issue_token, revoke
from tests.api.callers import Caller, error_of
from tests.factories import make_user

SAMPLE = {
    "{server_id}": "1",
    "{workflow_id}": "1",
    "{template_id}": "1",
    "{task_id}": "1",
    "{batch_id}": "1",
    "{output_id}": "1",
}


def operations():
    schema = api.get_openapi_schema(path_prefix="/api/v1")
    for path, methods in schema["paths"].items():
        for method in methods:
            url = path
            for placeholder, value in SAMPLE.items():
                url = url.replace(placeholder, value)
            yield method.upper(), url


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "url"), sorted(set(operations())))
def test_every_operation_answers_strangers_401_json(method, url):
    response = Caller(Client(), None)(method, url, {})
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert error_of(response)["type"] == "not_authenticated"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "token",
    ["", "cw_not-a-token", "garbage", "cw_" + "x" * 500],
    ids=["empty", "unknown", "bare", "long"],
)
def test_a_bad_token_is_a_401(token):
    response = Caller(Client(), token or " ")("GET", "tasks")
    assert response.status_code == 401


@pytest.mark.django_db
def test_a_revoked_or_expired_token_is_a_401():
    from datetime import timedelta

    from django.utils import timezone

    user = make_user()
    revoked, raw_revoked = issue_token(user, "old")
    revoke(revoked)
    _, raw_expired = issue_token(user, "x", expires_at=timezone.now() - timedelta(seconds=1))
    for raw in (raw_revoked, raw_expired):
        assert Caller(Client(), raw)("GET", "tasks").status_code == 401


@pytest.mark.django_db
def test_a_token_of_a_deactivated_user_is_a_401():
    user = make_user()
    _, raw = issue_token(user, "ci")
    user.is_active = False
    user.save()
    assert Caller(Client(), raw)("GET", "tasks").status_code == 401


@pytest.mark.django_db
def test_a_valid_token_is_accepted_and_marks_last_use():
    user = make_user()
    token, raw = issue_token(user, "ci")
    assert Caller(Client(), raw)("GET", "tasks").status_code == 200
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


@pytest.mark.django_db
def test_the_browser_session_works_and_writes_need_the_csrf_token():
    user = make_user(staff=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/v1/queue").status_code == 200
    refused = client.post("/api/v1/queue/pause", data="{}", content_type="application/json")
    assert refused.status_code == 403
    assert "CSRF" in error_of(refused)["message"]
    client.get("/")  # the dashboard sets the csrftoken cookie
    csrf = client.cookies["csrftoken"].value
    accepted = client.post(
        "/api/v1/queue/pause", data="{}", content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )
    assert accepted.status_code == 200
    assert accepted.json()["paused"] is True


@pytest.mark.django_db
def test_the_schema_needs_credentials_and_the_docs_page_sends_people_to_log_in():
    client = Client()
    assert client.get("/api/v1/openapi.json").status_code == 401
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 302
    assert docs["Location"].startswith("/login/")
    _, raw = issue_token(make_user(), "tool")
    schema = client.get("/api/v1/openapi.json", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
