"""API tokens: issued on the account page, in the admin and by a command; shown once,
stored hashed, revocable by their owner only, refused once revoked or expired."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from api.models import ApiToken
from api.tokens import LAST_USED_RESOLUTION, issue_token, revoke, user_for_token
from tests.factories import make_user

pytestmark = pytest.mark.django_db

TOKEN_RE = re.compile(r"cw_[A-Za-z0-9_-]{43}")


@pytest.fixture
def ada(client):
    user = make_user("ada")
    client.force_login(user)
    return user


def _create_on_account_page(client, name="render farm", days="90"):
    response = client.post("/account/tokens/", {"name": name, "expires_in_days": days})
    assert response.status_code == 200
    [raw] = TOKEN_RE.findall(response.content.decode())
    return response, raw


def _every_stored_value() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiToken._meta.db_table}")  # noqa: S608
        return [str(value) for row in cursor.fetchall() for value in row]


# Account page


def test_account_page_creates_a_token_and_shows_it_once(client, ada):
    response, raw = _create_on_account_page(client)
    assert "it will not be shown again" in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert user_for_token(raw) == ada

    again = client.get("/account/").content.decode()
    assert raw not in again
    token = ada.api_tokens.get()
    assert f"{token.prefix}…" in again
    assert "render farm" in again


def test_created_token_is_stored_only_as_a_digest(client, ada):
    _response, raw = _create_on_account_page(client)
    token = ApiToken.objects.get()
    assert token.digest != raw
    assert raw.startswith(token.prefix)
    assert not any(raw in value for value in _every_stored_value())


def test_the_clear_token_goes_into_no_session_and_no_cookie(client, ada):
    response, raw = _create_on_account_page(client)
    assert not any(raw in morsel.value for morsel in response.cookies.values())
    assert raw not in str(dict(client.session))


def test_expiry_choice_sets_expires_at(client, ada):
    before = timezone.now()
    _create_on_account_page(client, name="short", days="30")
    _create_on_account_page(client, name="forever", days="")
    short, forever = ada.api_tokens.get(name="short"), ada.api_tokens.get(name="forever")
    assert before + timedelta(days=30) <= short.expires_at <= timezone.now() + timedelta(days=30)
    assert forever.expires_at is None


def test_token_without_a_name_is_refused_and_nothing_is_created(client, ada):
    response = client.post("/account/tokens/", {"name": "  ", "expires_in_days": "30"})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not ApiToken.objects.exists()


def test_creating_and_revoking_need_a_post(client, ada):
    token, _raw = issue_token(ada, "ci")
    assert client.get("/account/tokens/").status_code == 405
    assert client.get(f"/account/tokens/{token.pk}/revoke/").status_code == 405
    assert not ApiToken.objects.exclude(pk=token.pk).exists()


def test_token_forms_need_the_csrf_token():
    user = make_user()
    token, _raw = issue_token(user, "ci")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/account/tokens/", {"name": "x"}).status_code == 403
    assert client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 403
    token.refresh_from_db()
    assert token.state == "active"
    assert ApiToken.objects.count() == 1


def test_account_page_lists_tokens_with_their_state(client, ada):
    issue_token(ada, "live one")
    revoke(issue_token(ada, "revoked one")[0])
    issue_token(ada, "old one", expires_at=timezone.now() - timedelta(days=1))
    issue_token(make_user(), "someone else's")
    page = client.get("/account/").content.decode()
    assert "live one" in page
    assert "revoked one" in page
    assert "old one" in page
    assert "someone else&#x27;s" not in page
    assert "someone else's" not in page
    assert page.count("Revoke</button>") == 1
    for state in ("active", "revoked", "expired"):
        assert f'class="badge token-{state}"' in page


def test_owner_revokes_a_token_and_it_stops_working(client, ada):
    token, raw = issue_token(ada, "ci")
    response = client.post(f"/account/tokens/{token.pk}/revoke/", follow=True)
    assert response.redirect_chain == [("/account/", 302)]
    assert "Revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.state == "revoked"
    assert user_for_token(raw) is None


def test_revoking_someone_elses_token_is_a_404(client, ada):
    token, raw = issue_token(make_user("bob"), "bob's")
    assert client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert user_for_token(raw).username == "bob"


# user_for_token


def test_user_for_token_accepts_a_fresh_token_and_records_its_use():
    user = make_user()
    token, raw = issue_token(user, "ci")
    assert token.last_used_at is None
    assert user_for_token(raw) == user
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_last_used_at_is_written_at_most_once_a_minute():
    user = make_user()
    token, raw = issue_token(user, "ci")
    user_for_token(raw)
    token.refresh_from_db()
    first = token.last_used_at
    user_for_token(raw)
    token.refresh_from_db()
    assert token.last_used_at == first

    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - LAST_USED_RESOLUTION)
    user_for_token(raw)
    token.refresh_from_db()
    assert token.last_used_at > first - LAST_USED_RESOLUTION


def test_user_for_token_refuses_a_revoked_token():
    token, raw = issue_token(make_user(), "ci")
    revoke(token)
    assert user_for_token(raw) is None


def test_user_for_token_refuses_an_expired_token():
    _token, raw = issue_token(make_user(), "ci", expires_at=timezone.now() - timedelta(seconds=1))
    assert user_for_token(raw) is None


def test_token_works_until_it_expires():
    token, raw = issue_token(make_user(), "ci", expires_at=timezone.now() + timedelta(hours=1))
    assert user_for_token(raw) is not None
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    assert user_for_token(raw) is None
    token.refresh_from_db()
    assert token.state == "expired"


def test_user_for_token_refuses_tokens_of_inactive_users():
    user = make_user()
    _token, raw = issue_token(user, "ci")
    user.is_active = False
    user.save()
    assert user_for_token(raw) is None


@pytest.mark.parametrize(
    "garbage", ["", "cw_", "cw_not-a-real-token", "Bearer cw_x", "x" * 60, "cw_" + "a" * 300]
)
def test_user_for_token_refuses_garbage(garbage):
    issue_token(make_user(), "ci")
    assert user_for_token(garbage) is None


def test_user_for_token_refuses_a_tampered_token():
    _token, raw = issue_token(make_user(), "ci")
    tampered = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    assert user_for_token(tampered) is None


# Management command


def test_command_prints_exactly_one_line_a_valid_token():
    user = make_user("ada")
    out, err = StringIO(), StringIO()
    call_command("create_api_token", "ada", "--name", "nightly", stdout=out, stderr=err)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert TOKEN_RE.fullmatch(lines[0])
    assert user_for_token(lines[0]) == user
    assert err.getvalue() == ""
    token = user.api_tokens.get()
    assert (token.name, token.expires_at) == ("nightly", None)


def test_command_sets_the_expiry_in_days():
    user = make_user("ada")
    call_command("create_api_token", "ada", "--expires-days", "7", stdout=StringIO())
    expires_at = user.api_tokens.get().expires_at
    assert timezone.now() + timedelta(days=6) < expires_at <= timezone.now() + timedelta(days=7)


def test_command_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("create_api_token", "nobody", stdout=StringIO())
    assert not ApiToken.objects.exists()


def test_command_refuses_an_inactive_user():
    make_user("gone", active=False)
    with pytest.raises(CommandError, match="inactive"):
        call_command("create_api_token", "gone", stdout=StringIO())
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("days", ["0", "-3", "soon"])
def test_command_refuses_a_bad_expiry(days):
    make_user("ada")
    with pytest.raises(CommandError):
        call_command("create_api_token", "ada", "--expires-days", days, stdout=StringIO())
    assert not ApiToken.objects.exists()


# Admin


@pytest.fixture
def superuser_client(client):
    client.force_login(make_user("root", superuser=True))
    return client


def test_admin_add_issues_a_token_and_shows_it_once(superuser_client):
    ada = make_user("ada")
    response = superuser_client.post(
        "/admin/api/apitoken/add/",
        {"user": ada.pk, "name": "from admin", "expires_at_0": "", "expires_at_1": ""},
    )
    assert response.status_code == 200
    [raw] = TOKEN_RE.findall(response.content.decode())
    assert "it will not be shown again" in response.content.decode()
    assert user_for_token(raw) == ada
    token = ApiToken.objects.get()
    assert token.name == "from admin"
    assert token.expires_at is None
    assert not any(raw in value for value in _every_stored_value())
    assert raw not in str(dict(superuser_client.session))

    for url in ("/admin/api/apitoken/", f"/admin/api/apitoken/{token.pk}/change/"):
        page = superuser_client.get(url).content.decode()
        assert raw not in page
        assert token.digest not in page


def test_admin_changelist_lists_filters_and_searches_tokens(superuser_client):
    ada, bob = make_user("ada"), make_user("bob")
    live, _ = issue_token(ada, "render farm")
    old, _ = issue_token(bob, "old script")
    revoke(old)
    page = superuser_client.get("/admin/api/apitoken/").content.decode()
    assert "render farm" in page
    assert "old script" in page
    assert live.digest not in page
    assert old.digest not in page

    active = superuser_client.get("/admin/api/apitoken/?state=active").content.decode()
    assert "render farm" in active
    assert "old script" not in active
    found = superuser_client.get("/admin/api/apitoken/", {"q": "bob"}).content.decode()
    assert "old script" in found
    assert "render farm" not in found
    found = superuser_client.get("/admin/api/apitoken/", {"q": live.prefix}).content.decode()
    assert "render farm" in found
    assert "old script" not in found


def test_admin_action_revokes_selected_tokens(superuser_client):
    ada = make_user("ada")
    first, first_raw = issue_token(ada, "one")
    second, second_raw = issue_token(ada, "two")
    response = superuser_client.post(
        "/admin/api/apitoken/",
        {"action": "revoke_selected", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert "Revoked 2 token(s)." in response.content.decode()
    assert user_for_token(first_raw) is None
    assert user_for_token(second_raw) is None


def test_admin_change_form_edits_expiry_but_not_the_token(superuser_client):
    token, raw = issue_token(make_user("ada"), "ci")
    page = superuser_client.get(f"/admin/api/apitoken/{token.pk}/change/").content.decode()
    assert 'name="expires_at_0"' in page
    assert 'name="prefix"' not in page
    assert 'name="revoked_at' not in page
    response = superuser_client.post(
        f"/admin/api/apitoken/{token.pk}/change/",
        {"name": "ci", "expires_at_0": "2000-01-01", "expires_at_1": "00:00:00"},
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.state == "expired"
    assert user_for_token(raw) is None
