from __future__ import annotations

from django.apps import AppConfig


class ComfyWebConfig(AppConfig):
    name = "comfyweb"
    verbose_name = "ComfyWeb"
