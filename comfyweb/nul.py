"""NUL characters never reach the database: refused at the door with a 400.

PostgreSQL stores no NUL in text or jsonb, so a search for "a\\x00" or a graph
with "\\u0000" in a prompt would otherwise end in a DataError (a 500) — or, if
stripped quietly, in a record that is not what was sent. Query strings are
checked by `RejectNulMiddleware` for every page and API call, and so are the
API's JSON bodies; graphs pasted or uploaded on the pages by `tasks.validation`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse

NUL = "\x00"
MESSAGE = "Text may not contain NUL (\\u0000) characters"
# A NUL in JSON text is the escape \u0000, i.e. an odd run of backslashes then
# u0000 (an even run is escaped backslashes followed by the letters "u0000").
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def find_nul(value: Any, path: str = "") -> str | None:
    """The path (`a.b.0`) of the first key or string in `value` holding a NUL, or None."""
    if isinstance(value, str):
        return (path or "(value)") if NUL in value else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and NUL in key:
                return here.replace(NUL, "\\u0000")
            if (found := find_nul(item, here)) is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if (found := find_nul(item, f"{path}.{index}" if path else str(index))) is not None:
                return found
    return None


class RejectNulMiddleware:
    """A NUL in a query parameter, or in an API call's JSON body, is a 400 before
    any view runs. (The API's own body parser cannot say why: django-ninja turns
    whatever it raises into "Cannot parse request body".)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for name, values in request.GET.lists():
            if NUL in name or any(NUL in value for value in values):
                where = f"query parameter {name.replace(NUL, '\\u0000')!r}"
                return _bad_request(request, where)
        json_body = _is_api(request) and request.content_type == "application/json"
        if json_body and _JSON_NUL.search(request.body):
            return _bad_request(request, f"at {_where_in_json(request.body)}")
        return self.get_response(request)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def _where_in_json(body: bytes) -> str:
    try:
        return find_nul(json.loads(body)) or "the body"
    except ValueError:
        return "the body"  # not JSON at all: the API says so once it is let through


def _bad_request(request: HttpRequest, where: str) -> HttpResponse:
    message = f"{MESSAGE} ({where}): they cannot be stored."
    if _is_api(request):
        # The API's error envelope (api/errors.py), without importing the API here.
        body = {"error": {"type": "validation_error", "message": message, "details": None}}
        return HttpResponse(json.dumps(body), status=400, content_type="application/json")
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
