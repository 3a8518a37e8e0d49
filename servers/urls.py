from __future__ import annotations

from django.urls import path

from servers import views
from servers.containers import views as containers
from servers.local import views as local

app_name = "servers"
urlpatterns = [
    path("", views.server_list, name="list"),
    path("<int:pk>/", views.server_detail, name="detail"),
    path("<int:pk>/test", views.server_test, name="test"),
    path("<int:pk>/outage", views.server_outage, name="outage"),
    # Container pools (issue #13).
    path("containers/panel", containers.containers_panel, name="containers_panel"),
    path("containers/<int:pk>/drain", containers.container_drain, name="container_drain"),
    path("containers/<int:pk>/recreate", containers.container_recreate, name="container_recreate"),
    path("containers/<int:pk>/remove", containers.container_remove, name="container_remove"),
    path("pools/<int:pk>/", containers.pool_detail, name="pool"),
    path("pools/<int:pk>/panel", containers.pool_panel, name="pool_panel"),
    path("pools/<int:pk>/scale", containers.pool_scale, name="pool_scale"),
    path("pools/<int:pk>/autoscale", containers.pool_autoscale, name="pool_autoscale"),
    # Local ComfyUI instances (issue #14), staff only.
    path("local/add", local.instance_add, name="local_add"),
    path("local/<int:pk>/", local.instance_page, name="local"),
    path("local/<int:pk>/edit", local.instance_edit, name="local_edit"),
    path("local/<int:pk>/delete", local.instance_delete, name="local_delete"),
    path("local/<int:pk>/start", local.instance_start, name="local_start"),
    path("local/<int:pk>/stop", local.instance_stop, name="local_stop"),
    path("local/<int:pk>/restart", local.instance_restart, name="local_restart"),
]
