"""Every API error is JSON: {"error": {"type", "message", "details"}}.

Handlers here turn what views and services raise (Http404, PermissionDenied,
ninja's request validation, our ApiError) into that shape, so no endpoint
builds an error body by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as RequestValidationError

logger = logging.getLogger(__name__)

UNAUTHENTICATED = "Send `Authorization: Bearer <token>` with a valid API token, or sign in."
TYPES_BY_STATUS = {
    400: "validation_error",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    429: "throttled",
}


class FieldProblem(Schema):
    field: str
    message: str


class ErrorDetail(Schema):
    type: str
    message: str
    details: Any = None


class ErrorOut(Schema):
    error: ErrorDetail


# Responses every authenticated operation may give besides its success.
ERRORS: dict[int, type[Schema]] = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut}


class ApiError(Exception):
    """An error with its status, type and details, raised by endpoints."""

    def __init__(self, status: int, message: str, *, type: str = "", details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type or TYPES_BY_STATUS.get(status, "error")
        self.message = message
        self.details = details


def invalid(problems: Iterable[tuple[str, str]], **details: Any) -> ApiError:
    """A 400 listing every field problem (and extra details such as node_errors)."""
    fields = [{"field": field, "message": message} for field, message in problems]
    count = len(fields)
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in fields[:3])
    message = f"{count} problem{'s' if count != 1 else ''} in the request: {summary}"
    return ApiError(400, message, details={"fields": fields, **details})


def form_problems(form, rename: Mapping[str, str] | None = None, prefix: str = ""):
    """(field, message) for every error of a Django form, with API field names."""
    rename = rename or {}
    for name, errors in form.errors.items():
        field = "" if name == "__all__" else rename.get(name, name)
        path = f"{prefix}{field}" if field else prefix.rstrip(".") or "request"
        for message in errors:
            yield path, message


def model_problems(exc: DjangoValidationError) -> list[tuple[str, str]]:
    """(field, message) for every message of a model's ValidationError (full_clean)."""
    by_field = (
        exc.message_dict.items() if hasattr(exc, "error_dict") else [("request", exc.messages)]
    )
    return [
        (field if field != "__all__" else "request", message)
        for field, messages in by_field
        for message in messages
    ]


def body(error_type: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message, "details": details}}


def install_handlers(api: NinjaAPI) -> None:
    def respond(request: HttpRequest, status: int, error_type: str, message: str, details=None):
        response = api.create_response(request, body(error_type, message, details), status=status)
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="comfyweb"'
        return response

    @api.exception_handler(ApiError)
    def api_error(request, exc: ApiError) -> HttpResponse:
        return respond(request, exc.status, exc.type, exc.message, exc.details)

    @api.exception_handler(RequestValidationError)
    def request_invalid(request, exc: RequestValidationError) -> HttpResponse:
        error = invalid(_pydantic_problems(exc.errors))
        return respond(request, 400, error.type, error.message, error.details)

    @api.exception_handler(DjangoValidationError)
    def model_invalid(request, exc: DjangoValidationError) -> HttpResponse:
        error = invalid(model_problems(exc))
        return respond(request, 400, error.type, error.message, error.details)

    @api.exception_handler(AuthenticationError)
    def unauthenticated(request, exc) -> HttpResponse:
        return respond(
            request,
            401,
            "not_authenticated",
            UNAUTHENTICATED,
        )

    @api.exception_handler(HttpError)
    def http_error(request, exc: HttpError) -> HttpResponse:
        status = exc.status_code
        # ninja's own 400 is a body it could not parse: name the body as the field.
        details = {"fields": [{"field": "body", "message": str(exc)}]} if status == 400 else None
        return respond(request, status, TYPES_BY_STATUS.get(status, "error"), str(exc), details)

    @api.exception_handler(Http404)
    def not_found(request, exc) -> HttpResponse:
        # Django's get_object_or_404 message names the model only, never the id's owner.
        message = str(exc) if str(exc) and "matches the given query" not in str(exc) else ""
        return respond(request, 404, "not_found", message or "Not found.")

    @api.exception_handler(PermissionDenied)
    def forbidden(request, exc) -> HttpResponse:
        return respond(request, 403, "permission_denied", str(exc) or "Not allowed.")

    @api.exception_handler(Exception)
    def server_error(request, exc) -> HttpResponse:
        logger.exception("API error on %s %s", request.method, request.path)
        return respond(request, 500, "server_error", "Something went wrong on our side.")


def _pydantic_problems(errors: list[dict[str, Any]]):
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        # ninja prefixes "body"/"query"/"path" and the parameter's own name.
        if location and location[0] in {"body", "query", "path"}:
            location = location[1:]
        if location and location[0] in {"payload", "filters"}:
            location = location[1:]
        # parameters.0.type -> parameters[0].type, as the form errors name it.
        path = "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in location)
        yield path.lstrip(".") or "body", error.get("msg", "Invalid value.")
