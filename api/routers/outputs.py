"""Output files (A8): the bytes with their content type, under the task's access rules;
many of them at once as a streamed zip (tasks/zips.py)."""

from __future__ import annotations

from django.http import FileResponse, StreamingHttpResponse
from ninja import Router, Schema
from pydantic import Field

from api.errors import ERRORS, ApiError, ErrorOut
from api.schemas import PathId
from tasks import access, zips

router = Router(tags=["outputs"])

BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    "/outputs/{output_id}/file",
    response=ERRORS,
    url_name="output_file",
    summary="Download an output file",
    openapi_extra={
        "responses": {
            200: {
                "description": "The file, with the content type it was stored with.",
                "content": {
                    "image/png": BINARY,
                    "image/jpeg": BINARY,
                    "image/webp": BINARY,
                    "application/octet-stream": BINARY,
                },
            }
        }
    },
)
def output_file(request, output_id: PathId) -> FileResponse:
    output = access.output_for(request.user, output_id)
    stream = access.open_stored(output.file)
    extension = output.file.name.rsplit(".", 1)[-1]
    response = FileResponse(
        stream,
        content_type=output.content_type,
        as_attachment=True,
        filename=f"task-{output.task_id}-output-{output.pk}.{extension}",
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response


class ZipIn(Schema):
    ids: list[int] = Field(
        min_length=1,
        max_length=zips.MAX_FILES,
        description=f"Output ids, at most {zips.MAX_FILES}; the zip holds them in this order.",
    )


@router.post(
    "/outputs/zip",
    response={**ERRORS, 413: ErrorOut},
    url_name="outputs_zip",
    summary="Download many outputs as one zip",
    description=(
        "Streamed as it is written, the files stored as they are (not recompressed) "
        "under the names a single download gets. Every id must be an output you may "
        f"see (else 404, naming the first that is not); at most {zips.MAX_FILES} files "
        f"and {zips.MAX_BYTES // 1024**2} MiB together (else 413, `too_large`)."
    ),
    openapi_extra={
        "responses": {200: {"description": "The zip.", "content": {"application/zip": BINARY}}}
    },
)
def outputs_zip(request, body: ZipIn) -> StreamingHttpResponse:
    try:
        outputs = zips.outputs_for_zip(request.user, zips.parse_ids(body.ids))
    except zips.Refused as refused:
        kind = "too_large" if refused.status == 413 else ""
        raise ApiError(refused.status, refused.message, type=kind) from None
    return zips.zip_response(outputs, f"comfyweb-{len(outputs)}-outputs.zip")
