"""The models library (#14): its files, and the downloads that fetch them into it.

Everyone signed in reads; staff ask for, cancel and retry downloads. The checks
are `library.requests`' (the Downloads page asks the same functions): a refusal
is a 400 naming the fields. A download's custom `headers` are write-only: taken
on POST, sent by the worker to the URL's own host, never in any answer here —
not echoed, not in an error. Readers who are not staff get the URL without its
query string and credentials (a signed URL's token is there).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Schema, Status
from pydantic import Field

from api import idempotency
from api.auth import require_staff
from api.errors import ERRORS, ApiError, ErrorOut, invalid, model_problems
from api.idempotency import IdempotencyKey
from api.schemas import PathId
from library import progress, requests
from library.models import (
    DEFAULT_CONNECTIONS,
    MAX_CONNECTIONS,
    Download,
    DownloadState,
    ModelFile,
)
from library.validation import FOLDERS

router = Router(tags=["models library"])

FOLDER_HELP = "A ComfyUI model folder: " + ", ".join(FOLDERS)
# library.requests' field names -> the API's.
FIELD_NAMES = {"expected_sha256": "sha256", "__all__": "request"}


class DownloadOut(Schema):
    id: int
    url: str = Field(description="In full for staff; others get it without query or credentials")
    folder: str
    filename: str
    size: int | None = Field(description="Bytes; null until the server said")
    downloaded: int
    fraction: float | None = Field(description="downloaded / size, 0..1; null: size unknown")
    speed_bps: int = Field(description="Bytes a second, over the last few seconds (running)")
    eta_seconds: float | None = Field(description="Seconds left at that speed (running only)")
    connections: int = Field(description="Connections asked for")
    active_connections: int = Field(description="Connections fetching right now")
    state: Literal["queued", "running", "verifying", "completed", "failed", "canceled"]
    sha256: str = Field(description="What the file hashed to (once verified)")
    expected_sha256: str = Field(description="The hash asked for; empty: none")
    error: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class DownloadIn(Schema):
    url: str = Field(max_length=2048, description="http or https")
    folder: str = Field(max_length=32, description=FOLDER_HELP)
    filename: str | None = Field(None, description="null: the last part of the URL's path")
    sha256: str | None = Field(None, description="Expected sha256 (64 hex digits): verified")
    headers: dict[str, str] | None = Field(
        None,
        description="Sent with the requests to the URL's own host (not after a redirect "
        "elsewhere), e.g. Authorization. Write-only: never shown again.",
    )
    connections: int = Field(DEFAULT_CONNECTIONS, ge=1, le=MAX_CONNECTIONS)


class ModelFileOut(Schema):
    folder: str
    filename: str
    size: int
    sha256: str = Field(description="Empty until hashed")


def download_json(download: Download, user) -> dict[str, Any]:
    """The download as `user` may see it (library.progress.summary: never its headers)."""
    return {
        **progress.summary(download),
        "url": progress.shown_url(download.url, full=user.is_staff),
    }


def _download(pk: int) -> Download:
    return get_object_or_404(Download.objects.defer("headers"), pk=pk)


def _problems(error: ValidationError) -> ApiError:
    return invalid(
        (FIELD_NAMES.get(field, field), message) for field, message in model_problems(error)
    )


@router.get("/downloads", response={200: list[DownloadOut], **ERRORS}, summary="List downloads")
def list_downloads(request) -> list[dict[str, Any]]:
    return [download_json(d, request.user) for d in Download.objects.defer("headers")]


@router.post(
    "/downloads",
    response={201: DownloadOut, **ERRORS, **idempotency.ERRORS},
    summary="Download a model into the library (staff)",
    description="Queued for the worker (201, state queued); if the library already holds "
    "a file with the expected sha256, it is placed under the new name at once (201, "
    "state completed).",
)
def create_download(request, payload: DownloadIn, idempotency_key: IdempotencyKey = None):
    return idempotency.once(
        request, idempotency_key, DownloadOut, lambda: _create_download(request, payload)
    )


def _create_download(request, payload: DownloadIn) -> Status:
    require_staff(request, "add downloads")
    try:
        download = requests.request_download(**payload.model_dump())
    except ValidationError as error:
        raise _problems(error) from None
    return Status(201, download_json(download, request.user))


@router.get(
    "/downloads/{download_id}", response={200: DownloadOut, **ERRORS}, summary="One download"
)
def get_download(request, download_id: PathId) -> dict[str, Any]:
    return download_json(_download(download_id), request.user)


@router.delete(
    "/downloads/{download_id}",
    response={200: DownloadOut, 202: DownloadOut, 409: ErrorOut, **ERRORS},
    summary="Cancel a download (staff)",
    description="200: canceled, its partial file deleted. 202: a worker is fetching it and "
    "stops within a second (then canceled). 409: it has completed or failed already.",
)
def cancel_download(request, download_id: PathId):
    require_staff(request, "cancel downloads")
    download = _download(download_id)
    if download.state in (DownloadState.COMPLETED, DownloadState.FAILED):
        raise ApiError(409, f"Nothing to cancel: the download has {download.state}.")
    download = requests.cancel(download)
    return Status(202 if download.is_active else 200, download_json(download, request.user))


@router.post(
    "/downloads/{download_id}/retry",
    response={200: DownloadOut, 409: ErrorOut, **ERRORS},
    summary="Retry a failed or canceled download (staff)",
    description="Queued again; it resumes from its partial file if the file on the server "
    "is unchanged. 409: it is not failed or canceled, or another download of that name "
    "is under way.",
)
def retry_download(request, download_id: PathId) -> dict[str, Any]:
    require_staff(request, "retry downloads")
    download = _download(download_id)
    try:
        download = requests.retry(download)
    except ValidationError as error:
        message = " ".join(error.messages)
        raise ApiError(409, f"{message[:1].upper()}{message[1:]}.") from None
    return download_json(download, request.user)


class ModelFilter(Schema):
    folder: str | None = Field(None, description=FOLDER_HELP)


@router.get(
    "/models", response={200: list[ModelFileOut], **ERRORS}, summary="List the library's files"
)
def list_models(request, filters: Query[ModelFilter]) -> Any:
    files = ModelFile.objects.all()
    if filters.folder is not None:
        if filters.folder not in FOLDERS:
            raise invalid([("folder", FOLDER_HELP)])
        files = files.filter(folder=filters.folder)
    return files.values("folder", "filename", "size", "sha256")
