from __future__ import annotations

from django.urls import path

from webhooks import views

app_name = "webhooks"
urlpatterns = [
    path("", views.webhook_list, name="list"),
    path("log", views.list_panel, name="list_panel"),
    path("secret", views.submission_secret, name="submission_secret"),
    path("<int:pk>/", views.endpoint_detail, name="endpoint"),
    path("<int:pk>/log", views.endpoint_panel, name="endpoint_panel"),
    path("<int:pk>/toggle", views.endpoint_toggle, name="endpoint_toggle"),
    path("<int:pk>/delete", views.endpoint_delete, name="endpoint_delete"),
    path("deliveries/<int:pk>/redeliver", views.redeliver, name="redeliver"),
]
