"""The dashboard's recent results, fetched again when the live socket says so."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from tasks import pictures


@require_GET
def recent_results(request: HttpRequest) -> HttpResponse:
    context = pictures.recent_results(request.user)
    return render(request, f"{pictures.TEMPLATE}#recent-results", context)
