"""The account page's API token views: create (shown once) and revoke.

The list and the form live on the account page (comfyweb.views.render_account).
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from api import tokens
from api.forms import ApiTokenForm
from api.models import ApiToken
from comfyweb.views import render_account


def _get_token_for_user(request: HttpRequest, pk: int) -> ApiToken:
    """One of the user's own tokens; anyone else's is a 404, not a 403."""
    return get_object_or_404(ApiToken, pk=pk, user=request.user)


@never_cache  # The response carries the token in clear: no cache may keep it.
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return render_account(request, token_form=form, status=400)
    # Rendered, not redirected: the clear token must not go through the session,
    # a message cookie or a URL, so it exists in this one response only.
    issued = tokens.issue_token(
        request.user, form.cleaned_data["name"], expires_at=form.expires_at()
    )
    return render_account(request, issued=issued)


@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = _get_token_for_user(request, pk)
    tokens.revoke(token)
    messages.success(request, f"Revoked “{token}”. Programs using it are refused from now on.")
    return redirect("account")
