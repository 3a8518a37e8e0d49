"""Schemas several resources share."""

from __future__ import annotations

from typing import Annotated

from ninja import Path, Query, Schema
from pydantic import Field


class Ref(Schema):
    """Another object named in a response: its id and name."""

    id: int
    name: str


def ref(obj) -> dict | None:
    return None if obj is None else {"id": obj.pk, "name": str(obj.name)}


# Ids are 64-bit; anything larger cannot name an object and must not reach the
# database (SQLite and PostgreSQL both fail on the overflow instead of finding nothing).
MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(None, ge=1, le=MAX_ID)]
