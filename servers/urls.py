from __future__ import annotations

from django.urls import path

from servers import views

app_name = "servers"
urlpatterns = [
    path("", views.server_list, name="list"),
    path("<int:pk>/", views.server_detail, name="detail"),
    path("<int:pk>/test", views.server_test, name="test"),
    path("<int:pk>/outage", views.server_outage, name="outage"),
]
