"""API requests as one user, with the user's token, and the error shape they get back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.test import Client

from api.tokens import issue_token


@dataclass
class Caller:
    """Sends API requests as one user (None: no credentials at all)."""

    client: Client
    token: str | None

    def __call__(self, method: str, path: str, body: Any = None, **query: Any):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {self.token}"} if self.token else {}
        url = path if path.startswith("/") else f"/api/v1/{path}"
        if method.upper() == "GET":
            return self.client.get(url, query, **headers)
        data = "" if body is None else json.dumps(body)
        return getattr(self.client, method.lower())(
            url, data=data, content_type="application/json", **headers
        )


def caller_for(user) -> Caller:
    token = issue_token(user, "tests")[1] if user is not None else None
    return Caller(Client(), token)


def error_of(response) -> dict[str, Any]:
    """The error object of an error response (and proof that it has the shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"type", "message", "details"} <= set(body["error"]), body
    return body["error"]


def fields_named(response) -> set[str]:
    """The fields a 400's error names."""
    return {problem["field"] for problem in error_of(response)["details"]["fields"]}
