"""`Idempotency-Key` on the creating POSTs: a retry gets the first answer, not a second batch.

A client that lost the answer to `POST /tasks` (a timeout, a 502 from a proxy)
cannot know whether its batch was made; sent again with the same key, the
request is answered with what the first one answered (same ids, same status)
and creates nothing. The key, a hash of the request and the answer are kept in
`IdempotentRequest` for `TTL`, per user. The row is inserted before the work,
in the work's transaction: a concurrent duplicate blocks on the unique
(user, key) until the first commits, then replays its answer; if the first
fails, nothing is kept and the duplicate does the work. Only successes are
kept: an error is the same error when retried, or has gone away.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from ninja import Header, Schema, Status

from api.errors import ApiError, ErrorOut
from api.models import IdempotentRequest

HEADER = "Idempotency-Key"
TTL = timedelta(hours=24)
REUSED = "idempotency_key_reused"

IdempotencyKey = Annotated[
    str | None,
    Header(
        None,
        alias=HEADER,
        min_length=1,
        max_length=255,
        pattern=r"^[!-~]+$",  # visible ASCII, e.g. a UUID
        description="Send the same key again (within 24 h) to get the first answer "
        "instead of creating twice; another request with a used key is a 422.",
    ),
]
# Besides the operation's own: a used key sent with another request (422), or
# sent again just as its first answer expired (409, rare).
ERRORS: dict[int, type[Schema]] = {409: ErrorOut, 422: ErrorOut}


def once(request: HttpRequest, key: str | None, schema: type[Schema], create: Callable[[], Any]):
    """`create()` (which returns a `Status`), or the answer it gave for this key before."""
    if key is None:
        return create()
    digest = request_hash(request)
    with transaction.atomic():
        IdempotentRequest.objects.filter(
            user=request.user, key=key, created_at__lt=timezone.now() - TTL
        ).delete()
        try:
            with transaction.atomic():
                record = IdempotentRequest.objects.create(
                    user=request.user, key=key, request_hash=digest
                )
        except IntegrityError:
            return _replay(request, key, digest)
        result = create()  # raises: everything, the key too, is rolled back
        record.status_code = result.status_code
        # As the client gets it: through the response schema, in JSON.
        record.response = schema.model_validate(result.value).model_dump_json()
        record.save(update_fields=["status_code", "response"])
    return result


def request_hash(request: HttpRequest) -> str:
    """SHA-256 of the method, the path with its query and the body (JSON in canonical form)."""
    try:
        body = json.dumps(json.loads(request.body), sort_keys=True, separators=(",", ":"))
    except ValueError:
        body = request.body.decode("latin-1")
    text = f"{request.method} {request.get_full_path()}\n{body}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _replay(request: HttpRequest, key: str, digest: str) -> Status:
    record = IdempotentRequest.objects.filter(user=request.user, key=key).first()
    if record is None or record.status_code is None:  # deleted (expired) in between
        raise ApiError(409, "A request with this Idempotency-Key just ended: send it again.")
    if record.request_hash != digest:
        raise ApiError(
            422,
            f"This {HEADER} was used for a different request (another body or operation) "
            "in the last 24 hours: use a new key for a new request.",
            type=REUSED,
        )
    return Status(record.status_code, json.loads(record.response))


def forget_expired() -> int:
    """Delete keys older than `TTL` (a schedule runs it); how many were deleted."""
    deleted, _ = IdempotentRequest.objects.filter(created_at__lt=timezone.now() - TTL).delete()
    return deleted
