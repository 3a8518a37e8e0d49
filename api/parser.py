"""Request bodies are JSON objects: anything else is refused before a schema sees it.

ninja hands a parsed list to a body schema whose fields are all optional as if
it were empty, so `[null, null]` would pause the queue; the API says 400.
JSON is read strictly (`comfyweb.guard.loads`: no NaN, Infinity, 1e400 or deep
nesting); the request guard has refused such bodies already, saying why, since
ninja replaces whatever a parser raises with "Cannot parse request body".
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.parser import Parser

from comfyweb import guard


class JsonObjectParser(Parser):
    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        if not request.body:
            return {}
        data = guard.parsed_body(request)
        if data is guard.NOT_READ:
            try:
                data = guard.loads(request.body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise HttpError(400, f"The body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise HttpError(400, f"The body must be a JSON object, not {type(data).__name__}.")
        return data
