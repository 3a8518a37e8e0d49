"""URLs of the gallery area (included by tasks/urls.py, namespace "tasks")."""

from __future__ import annotations

from django.urls import path

from tasks.views import gallery

urlpatterns = [
    path("gallery/", gallery.gallery, name="gallery"),
    path("gallery/<int:pk>/", gallery.output_detail, name="output_detail"),
]
