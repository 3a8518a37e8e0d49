from __future__ import annotations

from django.apps import AppConfig


class LibraryConfig(AppConfig):
    name = "library"
    label = "library"
    verbose_name = "Models library"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from comfyweb import topics
        from comfyweb.signals import cluster_started
        from library import panel, requests

        # The Downloads page follows downloads on the "downloads" topic (signed-in users).
        topics.register(panel.downloads_topic)
        # A worker that starts queues the downloads a stopped or killed one left behind.
        cluster_started.connect(requests.resume_interrupted, dispatch_uid="library.resume")
