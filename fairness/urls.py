"""URLs of the fairness app (namespace "fairness"): a team's limits page."""

from __future__ import annotations

from django.urls import path

from fairness import views

app_name = "fairness"
urlpatterns = [path("", views.limits, name="limits")]
