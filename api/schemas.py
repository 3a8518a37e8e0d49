"""Schemas several resources share."""

from __future__ import annotations

from ninja import Schema


class Ref(Schema):
    """Another object named in a response: its id and name."""

    id: int
    name: str


def ref(obj) -> dict | None:
    return None if obj is None else {"id": obj.pk, "name": str(obj.name)}
