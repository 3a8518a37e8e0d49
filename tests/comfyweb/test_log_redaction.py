"""No credential reaches a log line, at any level, whoever logs it (issue #11, item 7).

Requests carry credentials every way a client may send them (a token without
`Bearer `, Basic credentials, a session cookie, a CSRF token, secrets in the query
string) with DEBUG on and every logger at DEBUG; everything the configured
handlers write is read back. Two views fail with the request's headers and META
in their exception, for Django's and the API's 500 logging.
"""

from __future__ import annotations

import base64
import io
import logging

import pytest
import redis
from django.test import Client

from api.tokens import issue_token
from comfyweb.log_redaction import REDACTED, RedactSecrets, redact
from tests.factories import PASSWORD, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.comfyweb.log_urls")]

BASIC_PASSWORD = "basic-hunter2-Secret"


def project_handlers() -> list[logging.Handler]:
    """Every handler on any logger, but pytest's own capturing ones."""
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    return [
        handler
        for logger in loggers
        for handler in logger.handlers
        if not type(handler).__module__.startswith("_pytest")
        and not isinstance(handler, logging.NullHandler)  # writes nothing
    ]


@pytest.fixture
def logs(settings):
    """Everything the configured handlers write, with DEBUG on and loggers at DEBUG
    (as LOG_LEVEL=DEBUG sets them: django.db.backends stays at INFO)."""
    settings.DEBUG = True
    buffer = io.StringIO()
    streams = [
        (handler, handler.setStream(buffer))
        for handler in project_handlers()
        if isinstance(handler, logging.StreamHandler)
    ]
    assert streams, "no log handler configured"
    levels = {name: logging.getLogger(name).level for name in ("", "django", "daphne")}
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield buffer
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    for handler, stream in streams:
        handler.setStream(stream)


@pytest.fixture
def secrets(db):
    user = make_user("ada")
    token = issue_token(user, "logs")[1]
    basic = base64.b64encode(f"ada:{BASIC_PASSWORD}".encode()).decode()
    return {"user": user, "token": token, "basic": basic}


def signed_in(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def assert_no_secret(text: str, secrets: dict, *more: str) -> None:
    for secret in (secrets["token"], secrets["basic"], BASIC_PASSWORD, PASSWORD, *more):
        assert secret not in text
    assert secrets["token"][:12] not in text  # not even a token's start


def test_an_api_token_sent_without_bearer_is_not_logged(logs, secrets):
    client = Client()
    for header in (secrets["token"], f"Token {secrets['token']}", f"bearer{secrets['token']}"):
        assert client.get("/api/v1/tasks", HTTP_AUTHORIZATION=header).status_code == 401
    output = logs.getvalue()
    assert "Unauthorized: /api/v1/tasks" in output  # the requests were logged…
    assert_no_secret(output, secrets)  # …their credentials not


def test_basic_credentials_are_not_logged(logs, secrets):
    client = Client()
    for header in (f"Basic {secrets['basic']}", secrets["basic"], f"basic  {secrets['basic']}"):
        assert client.get("/api/v1/tasks", HTTP_AUTHORIZATION=header).status_code == 401
    assert "Unauthorized" in logs.getvalue()
    assert_no_secret(logs.getvalue(), secrets)


def test_secrets_in_a_query_string_are_not_logged(logs, secrets):
    query = f"?password={BASIC_PASSWORD}&token={secrets['token']}&api_key=k-{BASIC_PASSWORD}"
    assert Client().get(f"/api/v1/tasks{query}").status_code == 401
    assert Client().get(f"/no-such-page/{query}").status_code in (302, 404)
    assert_no_secret(logs.getvalue(), secrets)


def test_a_page_failing_with_the_requests_headers_logs_none_of_them(logs, secrets):
    client = signed_in(secrets["user"])
    session = client.cookies["sessionid"].value
    response = client.get(
        f"/test-fail/?password={BASIC_PASSWORD}",
        HTTP_AUTHORIZATION=f"Basic {secrets['basic']}",
        HTTP_X_CSRFTOKEN="csrf-secret-value-123",
        HTTP_PROXY_AUTHORIZATION=f"Bearer {secrets['token']}",
    )
    assert response.status_code == 500
    output = logs.getvalue()
    assert "Internal Server Error: /test-fail/" in output
    assert "UpstreamRefused" in output
    assert REDACTED in output
    assert_no_secret(output, secrets, session, "csrf-secret-value-123")


def test_an_api_endpoint_failing_with_the_requests_headers_logs_none_of_them(logs, secrets):
    response = Client(raise_request_exception=False).get(
        "/test-api/fail",
        HTTP_AUTHORIZATION=f"Bearer {secrets['token']}",
        HTTP_COOKIE="sessionid=cookie-session-secret-1; csrftoken=cookie-csrf-secret-2",
        HTTP_X_API_KEY="x-api-key-secret-3",
    )
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    output = logs.getvalue()
    assert "API error on GET /test-api/fail" in output
    assert "UpstreamRefused" in output
    assert_no_secret(
        output, secrets, "cookie-session-secret-1", "cookie-csrf-secret-2", "x-api-key-secret-3"
    )


def test_a_failed_login_logs_no_password(logs, secrets):
    client = Client(enforce_csrf_checks=True)  # the CSRF refusal is logged, with its request
    response = client.post("/login/", {"username": "ada", "password": BASIC_PASSWORD})
    assert response.status_code == 403
    assert "Forbidden (CSRF" in logs.getvalue()
    assert_no_secret(logs.getvalue(), secrets)


def test_every_log_handler_redacts():
    # Django's own handlers (its DEBUG console, mail_admins, django.server) would
    # print without the filter: none is left, and ours all carry it.
    handlers = project_handlers()
    assert handlers
    for handler in handlers:
        assert any(isinstance(f, RedactSecrets) for f in handler.filters), handler


def test_a_redis_pubsub_adds_no_handler_that_would_print_unredacted(settings):
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.pubsub().close()  # the first pub/sub sets up redis-py's push_response logger
    finally:
        client.close()
    assert logging.getLogger("push_response").handlers == []
    test_every_log_handler_redacts()


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Authorization: Bearer cw_abcdefghijkl", "Authorization: "),
        ("{'HTTP_AUTHORIZATION': 'Basic dXNlcjpwYXNz', 'PATH_INFO': '/x'}", "'PATH_INFO': '/x'"),
        ('{"Cookie": "sessionid=sess-1; csrftoken=csrf-2", "Accept": "*/*"}', '"Accept": "*/*"'),
        ("Unexpected auth - 'cw_abcdefghijkl'", "Unexpected auth - '"),
        ("connect to redis://:s3cret-pw@redis:6379/0", "redis://:"),
        ("GET /x?page=2&password=hunter2&q=cat", "page=2&password="),
        ("Proxy-Authorization: Digest username=u, response=abc", "Proxy-Authorization: "),
    ],
)
def test_redact_removes_the_secret_and_keeps_the_rest(text, kept):
    redacted = redact(text)
    assert kept in redacted
    assert REDACTED in redacted
    secrets = ("cw_abc", "dXNlcjpwYXNz", "sess-1", "csrf-2", "s3cret", "hunter2", "response=abc")
    for secret in secrets:
        assert secret not in redacted, redacted
    assert redact(redacted) == redacted  # twice changes nothing more
