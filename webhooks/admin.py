from __future__ import annotations

from django.contrib import admin

from webhooks import delivery
from webhooks.models import Delivery, DeliveryAttempt, Endpoint, SubmissionSecret, SubmissionWebhook


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ("url", "team", "enabled", "consecutive_failures", "disabled_reason")
    list_filter = ("enabled", "team")
    search_fields = ("url", "description")
    readonly_fields = ("consecutive_failures", "created_at")
    exclude = ("secret",)  # shown once to the admin who made it, never again


@admin.register(SubmissionSecret)
class SubmissionSecretAdmin(admin.ModelAdmin):
    list_display = ("team", "created_at")
    exclude = ("secret",)


@admin.register(SubmissionWebhook)
class SubmissionWebhookAdmin(admin.ModelAdmin):
    list_display = ("task_id", "batch_id", "team", "url")
    search_fields = ("url",)


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    readonly_fields = ("at", "status_code", "latency_ms", "response_excerpt", "error", "manual")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "message_id",
        "event_type",
        "team",
        "url",
        "state",
        "attempts",
        "last_status_code",
        "created_at",
    )
    list_filter = ("state", "event_type", "team")
    search_fields = ("message_id", "url", "event_key")
    readonly_fields = (
        "message_id",
        "event_key",
        "destination",
        "payload",
        "attempts",
        "created_at",
        "window_started_at",
        "delivered_at",
        "last_status_code",
        "last_error",
    )
    inlines = [AttemptInline]
    actions = ["redeliver"]

    @admin.action(description="Redeliver (same webhook-id)")
    def redeliver(self, request, queryset) -> None:
        for found in queryset:
            delivery.redeliver(found)
        self.message_user(request, f"{queryset.count()} queued again.")


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin):
    list_display = ("delivery", "at", "status_code", "latency_ms", "error", "manual")
    list_filter = ("manual",)
