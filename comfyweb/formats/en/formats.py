"""The admin's dates in ComfyWeb's one format (comfyweb/timefmt.py): Django's own
displays (the admin's lists and read-only fields, `|date` without a format) use
these instead of the locale's "Dec. 1, 2026, 2:03 p.m."."""

from __future__ import annotations

DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
