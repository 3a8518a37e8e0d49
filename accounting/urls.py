"""URLs of the accounting app (namespace "accounting"): a team's usage page, its live
report and its CSV export."""

from __future__ import annotations

from django.urls import path

from accounting import views

app_name = "accounting"
urlpatterns = [
    path("", views.usage, name="usage"),
    path("report/", views.report, name="report"),
    path("export.csv", views.export, name="export"),
]
