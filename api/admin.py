"""API tokens in the admin: list, filter, revoke; "add" issues one and shows it once.

The digest is never displayed: it is useless to people and is the one thing
stored that identifies a token.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.shortcuts import render
from django.utils import timezone
from django.utils.html import format_html

from api import tokens
from api.models import ApiToken

ADD_FIELDS = ["user", "name", "expires_at"]
CHANGE_FIELDS = [
    "user", "name", "prefix", "state", "created_at", "expires_at", "last_used_at", "revoked_at",
]  # fmt: skip


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).filter(
                Q(expires_at__isnull=True) | Q(expires_at__gt=now)
            )
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = [
        "name", "user", "prefix_shown", "created_at", "expires_at", "last_used_at", "state",
    ]  # fmt: skip
    list_filter = [StateFilter, "created_at", "expires_at"]
    search_fields = ["user__username", "name", "prefix"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    date_hierarchy = "created_at"
    actions = ["revoke_selected"]

    def get_fields(self, request, obj=None) -> list[str]:
        return CHANGE_FIELDS if obj else ADD_FIELDS

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        # Revoking is the action's job: an editable revoked_at could bring a token back.
        return [f for f in CHANGE_FIELDS if f not in ("name", "expires_at")] if obj else []

    @admin.display(description="Token", ordering="prefix")
    def prefix_shown(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    @admin.display(description="State")
    def state(self, token: ApiToken) -> str:
        return token.state

    def save_model(self, request, obj: ApiToken, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, raw = tokens.issue_token(obj.user, obj.name, expires_at=obj.expires_at)
        # The admin goes on with `obj` (its log entry, response_add): make it the stored row.
        for field in ApiToken._meta.concrete_fields:
            setattr(obj, field.attname, getattr(token, field.attname))
        obj._state = token._state
        obj._raw_token = raw

    def response_add(self, request, obj: ApiToken, post_url_continue=None):
        """A page, not a redirect: the message with the clear token is rendered in
        this response, so it is never stored in the session or a message cookie."""
        self.message_user(
            request,
            format_html(
                "Token “{}” created for {}. Copy it now, it will not be shown again: "
                "<code>{}</code>",
                obj.name,
                obj.user,
                obj._raw_token,
            ),
            messages.SUCCESS,
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "token": obj,
            "title": "API token created",
        }
        response = render(request, "api/admin_token_created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_selected(self, request, queryset: QuerySet[ApiToken]) -> None:
        # One UPDATE, so tokens revoked meanwhile keep their first revocation time.
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)
