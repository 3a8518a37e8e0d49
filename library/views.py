"""The Downloads page (issue #14): the library, the downloads with live progress, and
staff's form and buttons. The work is in `library.requests`; the worker fetches."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from library import panel, requests
from library.forms import DownloadForm
from library.models import Download


@require_http_methods(["GET", "HEAD", "POST"])
def downloads(request: HttpRequest) -> HttpResponse:
    """Everyone signed in reads; staff add a download (POST): an error re-renders the
    form with everything typed but the headers."""
    form = DownloadForm() if request.user.is_staff else None
    if request.method == "POST":
        if not request.user.is_staff:
            raise PermissionDenied("Only staff can add downloads.")
        form = DownloadForm(request.POST)
        if form.is_valid() and (download := form.submit()) is not None:
            messages.success(request, f"{_name(download)}: {download.get_state_display()}.")
            return redirect("library:downloads")
    context = panel.panel_context(request.user) | {"form": form}
    return render(request, panel.PAGE, context)


@require_GET
def downloads_panel(request: HttpRequest) -> HttpResponse:
    """The live sections, fetched by live.js after a refresh hint."""
    return HttpResponse(panel.render_panel(request.user))


@staff_member_required
@require_POST
def download_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Stop it and throw the partial file away (a worker holding it stops within a second)."""
    download = get_object_or_404(Download.objects.defer("headers"), pk=pk)
    if not download.is_active:
        messages.warning(request, f"{_name(download)} has {download.state} already.")
        return _back(request)
    download = requests.cancel(download)
    said = "canceled" if not download.is_active else "stopping"
    messages.success(request, f"{_name(download)}: {said}.")
    return _back(request)


@staff_member_required
@require_POST
def download_retry(request: HttpRequest, pk: int) -> HttpResponse:
    download = get_object_or_404(Download.objects.defer("headers"), pk=pk)
    try:
        download = requests.retry(download)
    except ValidationError as error:
        messages.error(request, f"{_name(download)}: {' '.join(error.messages)}")
        return _back(request)
    messages.success(request, f"{_name(download)}: queued again.")
    return _back(request)


def _name(download: Download) -> str:
    return f"{download.folder}/{download.filename}"


def _back(request: HttpRequest) -> HttpResponse:
    """To the page the button was on (its `next`), else the Downloads page."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect("library:downloads")
