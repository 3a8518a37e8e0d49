"""Input that would fail deeper down is refused at the door: a 4xx, never a 500.

`RequestGuardMiddleware`, before any view:
- a NUL in a query parameter is a 400, on pages and the API (`comfyweb.nul`);
- an API body over DATA_UPLOAD_MAX_MEMORY_SIZE is a 413; on the pages, where
  Django raises it while reading the form, `bad_request` (handler400) makes it one;
- an API body's JSON (whatever its Content-Type: the API reads every body as
  JSON) holding a NUL, a number PostgreSQL cannot store or nesting deeper than
  `MAX_DEPTH` is a 400 saying why. (The API's parser cannot say why: django-ninja
  turns whatever it raises into "Cannot parse request body".)

API refusals carry the error envelope (api/errors.py), pages get plain text.
`loads()` is the strict JSON reader the API's parser and the pages' graph
parsing (`workflows.validation`) share.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from comfyweb import nul

# Graphs are a few levels deep; nothing legitimate comes near this, and deeper
# JSON would take recursive code (ours, pydantic's, the encoders') to its limit.
MAX_DEPTH = 64


class Unstorable(ValueError):
    """JSON that Python reads but that cannot be stored or walked: the message says why."""


def loads(text: str | bytes) -> Any:
    """`json.loads`, refusing NaN, Infinity, -Infinity, numbers beyond a float's range
    (Python reads 1e400 as infinity) and nesting deeper than MAX_DEPTH: PostgreSQL's
    jsonb refuses the first three. Syntax errors are `json.JSONDecodeError` as usual."""
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise Unstorable(_too_deep()) from None
    if _depth(data) > MAX_DEPTH:
        raise Unstorable(_too_deep())
    return data


def _no_constant(name: str) -> float:
    raise Unstorable(f"{name} is not a JSON number and cannot be stored: use a finite number.")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Unstorable(f"The number {text[:40]} is too large to store (at most about 1.8e308).")
    return value


def _too_deep() -> str:
    return f"The JSON is nested too deeply (more than {MAX_DEPTH} levels)."


def _depth(data: Any) -> int:
    """Levels of arrays and objects, counted without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack and deepest <= MAX_DEPTH:
        value, level = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in value)
    return deepest


class RequestGuardMiddleware:
    """Refuses the input described in the module docstring before any view runs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for name, values in request.GET.lists():
            if nul.NUL in name or any(nul.NUL in value for value in values):
                where = f"query parameter {name.replace(nul.NUL, '\\u0000')!r}"
                return refuse(request, 400, nul.message(where))
        if is_api(request):
            try:
                body = request.body
            except RequestDataTooBig:
                return too_large(request)
            if problem := _json_problem(request, body):
                return refuse(request, 400, problem)
        return self.get_response(request)


def parsed_body(request: HttpRequest) -> Any:
    """The API body as the guard read it (`loads`), or `NOT_READ` if it did not."""
    return getattr(request, "_comfyweb_json", NOT_READ)


NOT_READ = object()


def _json_problem(request: HttpRequest, body: bytes) -> str | None:
    """Why an API body cannot be taken, or None (also when it is no JSON at all:
    the API's parser says so). What it read is kept for the parser (`parsed_body`):
    a 5 MB graph is parsed once, not twice."""
    if not body:
        return None
    try:
        data = loads(body)
    except Unstorable as exc:
        return str(exc)
    except ValueError:
        return None
    request._comfyweb_json = data
    if nul.JSON_NUL.search(body):
        return nul.message(f"at {nul.find_nul(data) or 'the body'}")
    return None


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def refuse(request: HttpRequest, status: int, message: str, error_type: str = "") -> HttpResponse:
    """The API's error envelope (api/errors.py, not imported here) or, on pages, plain text."""
    if is_api(request):
        error_type = error_type or "validation_error"
        body = {"error": {"type": error_type, "message": message, "details": None}}
        return HttpResponse(json.dumps(body), status=status, content_type="application/json")
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def too_large(request: HttpRequest) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / (1024 * 1024)
    message = f"The request is larger than the {limit:g} MB this server accepts."
    return refuse(request, 413, message, "too_large")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler400: a form too large to read is a 413, not Django's generic 400 page."""
    if isinstance(exception, RequestDataTooBig):
        return too_large(request)
    if is_api(request):
        return refuse(request, 400, "The request could not be read.")
    return defaults.bad_request(request, exception)
