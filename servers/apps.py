from __future__ import annotations

from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "servers"
    verbose_name = "Fleet"

    def ready(self) -> None:
        from comfyweb import health, topics
        from servers import status_panel
        from servers.monitor.heartbeat import check_monitor

        topics.register(status_panel.fleet_topic)
        topics.register(status_panel.detail_topic)
        # /healthz reports whether a monitor process is alive (S9).
        health.register(check_monitor)
