from __future__ import annotations

from django.urls import path

from library import views

app_name = "library"
urlpatterns = [
    path("downloads/", views.downloads, name="downloads"),
    path("downloads/panel", views.downloads_panel, name="downloads_panel"),
    path("downloads/<int:pk>/cancel", views.download_cancel, name="download_cancel"),
    path("downloads/<int:pk>/retry", views.download_retry, name="download_retry"),
]
