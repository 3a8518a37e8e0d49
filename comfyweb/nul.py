"""NUL characters never reach the database: refused at the door with a 400.

PostgreSQL stores no NUL in text or jsonb, so a search for "a\\x00" or a graph
with "\\u0000" in a prompt would otherwise end in a DataError (a 500) — or, if
stripped quietly, in a record that is not what was sent. Query strings are
checked by `comfyweb.guard.RequestGuardMiddleware` for every page and API call,
and so are the API's JSON bodies; graphs pasted or uploaded on the pages by
`workflows.validation`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

NUL = "\x00"
MESSAGE = "Text may not contain NUL (\\u0000) characters"
# A NUL in JSON text is the escape \u0000, i.e. an odd run of backslashes then
# u0000 (an even run is escaped backslashes followed by the letters "u0000").
JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


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


def message(where: str) -> str:
    return f"{MESSAGE} ({where}): they cannot be stored."
