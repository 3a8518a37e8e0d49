"""The admin tells django-q's background jobs apart from ComfyWeb's tasks."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command

from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _links(html: str) -> list[str]:
    return [re.sub(r"\s+", " ", text).strip() for text in re.findall(r"<a [^>]*>(.*?)</a>", html)]


def test_admin_index_groups_django_q_rows_as_background_jobs(client):
    client.force_login(make_user(superuser=True))
    html = client.get("/admin/").content.decode()
    assert "Background jobs" in html
    links = _links(html)
    assert {"Failed jobs", "Successful jobs", "Scheduled jobs"} <= set(links)
    assert not {"Failed tasks", "Successful tasks", "Scheduled tasks"} & set(links)
    assert "Tasks" in links  # ComfyWeb's own tasks keep the word


def test_failed_job_pages_name_jobs_not_tasks(client):
    client.force_login(make_user(superuser=True))
    html = client.get("/admin/django_q/failure/").content.decode()
    assert "Select failed job to change" in html
    assert "failed task" not in html.lower()


def test_renaming_needs_no_migration():
    call_command("makemigrations", "django_q", "--check", "--dry-run", verbosity=0)
