from __future__ import annotations

from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "servers"
    verbose_name = "Fleet"

    def ready(self) -> None:
        from comfyweb import health, topics
        from comfyweb.signals import cluster_started, containers_changed
        from servers import status_panel
        from servers.containers import panel as container_panel
        from servers.containers import tending
        from servers.local import admin as local_admin  # noqa: F401 (registers it)
        from servers.local import panel as local_panel
        from servers.local.heartbeat import check_launcher
        from servers.monitor.heartbeat import check_monitor

        topics.register(status_panel.fleet_topic)
        topics.register(status_panel.detail_topic)
        topics.register(container_panel.section_topic)
        topics.register(container_panel.pool_topic)
        topics.register(local_panel.instance_topic)  # staff only
        topics.register(local_panel.list_topic)  # staff only
        # /healthz reports whether a monitor process is alive (S9).
        health.register(check_monitor)
        health.register(check_launcher)  # ...and a launcher, once local instances exist
        # A worker that starts adopts or removes the containers of an earlier run (A7).
        cluster_started.connect(tending.cluster_started, dispatch_uid="servers.tend_pools")
        # The Servers page's Containers section and the pool pages follow the scheduler.
        containers_changed.connect(
            container_panel.publish_containers, dispatch_uid="servers.containers_panel"
        )
