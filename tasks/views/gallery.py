"""The gallery: a team's outputs as a viewer (lightbox, live arrivals, zip download)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from tasks import access, zips
from tasks.gallery import gallery_for
from tasks.views.tasks import run_again_url

PAGE_SIZE = 48
ITEMS = "tasks/gallery/items.html"


def _filters(request: HttpRequest) -> str:
    filters = request.GET.copy()
    for name in ("page", "after"):
        filters.pop(name, None)
    return filters.urlencode()


@require_GET
def gallery(request: HttpRequest) -> HttpResponse:
    query = gallery_for(request.user, request.GET)
    page = Paginator(query.outputs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"page": page, "form": query.form, "filters": _filters(request)}
    return render(request, "tasks/gallery/gallery.html", context)


@require_GET
def gallery_items(request: HttpRequest) -> HttpResponse:
    """What arrived after output `after` and matches the page's filters (newest first):
    the gallery's script asks when the live socket says a team has new outputs."""
    after = request.GET.get("after", "")
    after = int(after) if after.isdigit() and len(after) < 19 else 0
    outputs = gallery_for(request.user, request.GET, after=after).outputs[:PAGE_SIZE]
    return render(request, f"{ITEMS}#items", {"outputs": outputs})


@require_POST
def gallery_zip(request: HttpRequest) -> HttpResponse:
    try:
        ids = zips.parse_ids(request.POST.getlist("ids"))
        outputs = zips.outputs_for_zip(request.user, ids)
    except zips.Refused as refused:
        return render(
            request,
            "tasks/gallery/refused.html",
            {"message": refused.message},
            status=refused.status,
        )
    return zips.zip_response(outputs, f"comfyweb-{len(outputs)}-images.zip")


@require_GET
def output_detail(request: HttpRequest, pk: int) -> HttpResponse:
    output = access.output_for(request.user, pk)
    return render(
        request,
        "tasks/gallery/output.html",
        {"output": output, "task": output.task, "run_again_url": run_again_url(output.task)},
    )
