"""Many outputs as one zip download: the gallery's multi-select and
`POST /api/v1/outputs/zip`.

The zip is streamed: each file is read from storage a chunk at a time and sent
as it is written, so the web process holds one chunk whatever the selection
weighs, and the first bytes leave at once. The iterator is asynchronous because
daphne serves the response: Django reads a synchronous one whole into memory
before sending it under ASGI. Files are stored, not deflated: PNG, JPEG and
WebP are compressed already, and deflating them again costs CPU for nothing.

Every id must be an output the user may see (another team's is refused exactly
like a missing one: 404, naming neither), and a selection is capped by count and
by total size, both known before a byte is sent.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from django.utils import timezone

from tasks.models import Output

logger = logging.getLogger(__name__)

MAX_FILES = 500
MAX_BYTES = 1024**3  # 1 GiB: well under ZIP64, and minutes of download at worst
CHUNK = 256 * 1024
MAX_ID = 2**63 - 1  # PostgreSQL's bigint


@dataclass
class Refused(Exception):
    """A selection that cannot be zipped, with the HTTP status that says why."""

    status: int
    message: str

    def __str__(self) -> str:
        return self.message


def parse_ids(values: Iterable[object]) -> list[int]:
    """Output ids from a form or a JSON list: whole numbers 1 … 2**63-1, at most
    MAX_FILES distinct, in the order given; anything else is a 400."""
    ids: list[int] = []
    for value in values:
        text = str(value).strip() if not isinstance(value, bool) else ""
        if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_ID:
            raise Refused(400, f"Not an output id: {str(value)[:40]!r}.")
        if int(text) not in ids:
            ids.append(int(text))
        if len(ids) > MAX_FILES:
            raise Refused(400, f"At most {MAX_FILES} images go in one zip.")
    if not ids:
        raise Refused(400, "Select at least one image.")
    return ids


def outputs_for_zip(user, ids: list[int]) -> list[Output]:
    """The outputs `ids` name, in that order, if `user` may see every one, each still
    has its file and together they fit MAX_BYTES."""
    found = {o.pk: o for o in Output.objects.for_user(user).filter(pk__in=ids)}
    missing = [pk for pk in ids if pk not in found]
    if missing:
        raise Refused(404, f"No such output: {missing[0]}.")
    outputs = [found[pk] for pk in ids]
    total = sum(output.size for output in outputs)
    if total > MAX_BYTES:
        raise Refused(413, f"These images weigh {total:,} bytes; one zip holds {MAX_BYTES:,}.")
    gone = next((o for o in outputs if not o.file or not o.file.storage.exists(o.file.name)), None)
    if gone is not None:
        raise Refused(404, f"The file of output {gone.pk} is missing.")
    return outputs


def entry_name(output: Output) -> str:
    """Our name for the file, as a single download of it is named: never the server's."""
    extension = output.file.name.rsplit(".", 1)[-1]
    return f"task-{output.task_id}-output-{output.pk}.{extension}"


def zip_response(outputs: list[Output], filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_stream(outputs), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


class _Sink:
    """What zipfile writes to: kept until the stream takes it. Having no `seek`,
    it makes zipfile write sizes after each file (data descriptors), as a stream must."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


async def _stream(outputs: list[Output]) -> AsyncIterator[bytes]:
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED)
    for output in outputs:
        stamp = timezone.localtime(output.created_at).timetuple()[:6]
        info = zipfile.ZipInfo(entry_name(output), date_time=stamp)
        try:
            source = await sync_to_async(output.file.open)("rb")
        except FileNotFoundError:
            # Deleted after the check: the headers are sent, so leave it out.
            logger.warning("output %s vanished while being zipped", output.pk)
            continue
        try:
            with archive.open(info, "w") as entry:
                while chunk := await sync_to_async(source.read)(CHUNK):
                    entry.write(chunk)
                    yield sink.take()
        finally:
            await sync_to_async(source.close)()
        if data := sink.take():
            yield data
    archive.close()
    yield sink.take()
