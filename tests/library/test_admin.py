"""The library in the admin: a download's headers are never a field, a column, a
search term or a value on any of its pages (they are usually a token)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory

from library.models import Download
from tests.factories import make_user

pytestmark = pytest.mark.django_db

SECRET = "s3cret-admin-token"


@pytest.fixture
def download() -> Download:
    return Download.objects.create(
        url="http://127.0.0.1:9/files/m.safetensors",
        folder="checkpoints",
        filename="m.safetensors",
        headers={"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET},
    )


def test_headers_are_no_field_column_or_search_term_of_the_download_admin(download):
    model_admin = admin.site._registry[Download]
    request = RequestFactory().get("/")
    request.user = make_user(superuser=True)
    assert "headers" not in model_admin.get_fields(request, download)
    assert "headers" not in model_admin.get_form(request, download).base_fields
    assert "headers" not in model_admin.get_list_display(request)
    assert "headers" not in model_admin.get_search_fields(request)
    assert "headers" not in model_admin.get_readonly_fields(request, download)


def test_no_page_of_the_download_admin_shows_them(download, client):
    client.force_login(make_user("root", superuser=True))
    base = "/admin/library/download/"
    for url in (
        base,
        f"{base}{download.pk}/change/",
        f"{base}{download.pk}/history/",
        f"{base}{download.pk}/delete/",
    ):
        page = client.get(url)
        assert page.status_code == 200, url
        assert SECRET.encode() not in page.content, url
        assert b"Bearer" not in page.content, url
    # The search does not look into them either (the page repeats what was searched for).
    assert b"0 downloads" in client.get(f"{base}?q={SECRET}").content
