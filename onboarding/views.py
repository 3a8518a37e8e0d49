from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from onboarding import checklist


@require_POST
def dismiss(request: HttpRequest) -> HttpResponse:
    checklist.dismiss(request.user)
    return redirect("dashboard")
