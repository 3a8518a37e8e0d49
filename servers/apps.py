from __future__ import annotations

from django.apps import AppConfig


class ServersConfig(AppConfig):
    name = "servers"
    verbose_name = "Fleet"

    def ready(self) -> None:
        from comfyweb import topics
        from servers import status_panel

        topics.register(status_panel.fleet_topic)
        topics.register(status_panel.detail_topic)
