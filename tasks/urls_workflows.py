"""URLs of the workflows area (included by tasks/urls.py, namespace "tasks")."""

from __future__ import annotations

urlpatterns: list = []
