"""The library in the admin: read-only. Downloads change state through
`library/requests.py` and the worker; a download's headers (tokens) are never shown."""

from __future__ import annotations

from django.contrib import admin

from library.models import Download, ModelFile


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModelFile)
class ModelFileAdmin(ReadOnlyAdmin):
    list_display = ["filename", "folder", "size", "sha256", "created_at"]
    list_filter = ["folder"]
    search_fields = ["filename", "sha256"]


@admin.register(Download)
class DownloadAdmin(ReadOnlyAdmin):
    list_display = ["filename", "folder", "state", "downloaded", "size", "created_at"]
    list_filter = ["state", "folder"]
    search_fields = ["filename", "sha256"]
    exclude = ["headers"]
