"""URLs of the gallery area (included by tasks/urls.py, namespace "tasks")."""

from __future__ import annotations

urlpatterns: list = []
