"""URLs of the onboarding app (namespace "onboarding"): the first-run checklist."""

from __future__ import annotations

from django.urls import path

from onboarding import views

app_name = "onboarding"
urlpatterns = [
    path("checklist/dismiss", views.dismiss, name="dismiss"),
]
