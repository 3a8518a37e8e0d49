"""Output files (A8): the bytes with their content type, under the task's access rules."""

from __future__ import annotations

from django.http import FileResponse
from ninja import Router

from api.errors import ERRORS
from api.schemas import PathId
from tasks import access

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
