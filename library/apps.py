from __future__ import annotations

from django.apps import AppConfig


class LibraryConfig(AppConfig):
    name = "library"
    label = "library"
    verbose_name = "Models library"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from comfyweb import topics
        from library import progress

        # Pages follow downloads on the "downloads" topic (signed-in users).
        topics.register(progress.downloads_topic)
