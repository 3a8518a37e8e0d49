from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from tasks import access
from tasks.gallery import gallery_for
from tasks.views.tasks import run_again_url

PAGE_SIZE = 48


@require_GET
def gallery(request: HttpRequest) -> HttpResponse:
    query = gallery_for(request.user, request.GET)
    page = Paginator(query.outputs, PAGE_SIZE).get_page(request.GET.get("page"))
    filters = request.GET.copy()
    filters.pop("page", None)
    return render(
        request,
        "tasks/gallery/gallery.html",
        {"page": page, "form": query.form, "filters": filters.urlencode()},
    )


@require_GET
def output_detail(request: HttpRequest, pk: int) -> HttpResponse:
    output = access.output_for(request.user, pk)
    return render(
        request,
        "tasks/gallery/output.html",
        {"output": output, "task": output.task, "run_again_url": run_again_url(output.task)},
    )
