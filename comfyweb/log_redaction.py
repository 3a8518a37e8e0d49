"""Credentials never reach a log line: a filter on every handler redacts them.

Our code does not log credentials, but libraries do: django-ninja logs an
`Authorization` header that is not "Bearer …" at ERROR when DEBUG is on, Django
attaches the request (its full path, query string included) to django.request's
records, which the JSON formatter prints, and an exception's text may hold
anything a view had in hand. So the last step before output removes, from the
message, its arguments, the exception and stack text and every extra field:

- the values of the headers `Authorization`, `Proxy-Authorization`, `Cookie`,
  `Set-Cookie`, `X-Api-Key`, `X-Auth-Token`, `X-CSRFToken` (also as request.META
  keys, `HTTP_AUTHORIZATION`, and as keys of a dict);
- our API tokens (`cw_…`) and whatever follows `Bearer` or `Basic`;
- the password of a URL (`scheme://user:password@host`) and the values of
  query or form parameters named like a secret (`password=`, `token=`,
  `sessionid=`, `api_key=`, …).

settings.LOGGING puts `RedactSecrets` on its only handler, and routes Django's
own loggers there instead of Django's default handlers.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

_HEADER_NAMES = (
    r"(?:HTTP_)?(?:PROXY[-_])?AUTHORIZATION|(?:HTTP_)?(?:SET[-_])?COOKIE"
    r"|(?:HTTP_)?X[-_](?:API[-_]KEY|AUTH[-_]TOKEN|CSRF[-_]?TOKEN)"
)
# A header name, then ':' or '=' (after a closing quote when it is a dict key or
# a META repr), then its value: up to the matching quote, or the end of the line.
# Quotes may come escaped (\' in the repr of a repr, \" in JSON text): the value
# then ends at the same escaped quote.
_HEADER = re.compile(
    rf"""(?ix)
    (?P<key>(?<![A-Za-z0-9_-])(?:{_HEADER_NAMES}))
    (?P<sep>\\*['"]?\s*[:=]\s*)
    (?:(?P<q>\\*['"])(?:(?!(?P=q))(?:\\.|.))*(?P=q) | [^\r\n]+)
    """
)
# Words that make a parameter, field or dict key a secret one.
_SECRET_WORDS = r"password|passwd|secret|token|api[-_]?key|sessionid|session_id"  # noqa: S105
_SECRET_KEY = re.compile(rf"(?i)^(?:{_HEADER_NAMES}|.*(?:{_SECRET_WORDS}).*)$")
_PARAMETER = re.compile(
    rf"(?i)(?P<key>(?<![A-Za-z0-9])[a-z0-9_.-]*(?:{_SECRET_WORDS})[a-z0-9_.-]*=)[^&\s'\";]+"
)
_TOKEN = re.compile(r"(?<![A-Za-z0-9])cw_[A-Za-z0-9_-]+")
_SCHEME = re.compile(r"(?i)\b(?P<scheme>bearer|basic)(?P<space>\s+)[^\s'\",;]+")
_URL_PASSWORD = re.compile(r"(?i)(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@'\"]*:)[^/\s@'\"]*(?P<at>@)")


def redact(text: str) -> str:
    """The text with every credential it holds replaced by [REDACTED]."""
    text = _HEADER.sub(_header, text)
    text = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}\g<at>", text)
    text = _PARAMETER.sub(rf"\g<key>{REDACTED}", text)
    text = _SCHEME.sub(rf"\g<scheme>\g<space>{REDACTED}", text)
    return _TOKEN.sub(REDACTED, text)


def _header(match: re.Match[str]) -> str:
    quote = match.group("q") or ""
    return f"{match.group('key')}{match.group('sep')}{quote}{REDACTED}{quote}"


# Values the formatters print as they are: nothing in them to redact.
_PLAIN = (bool, int, float, type(None), datetime.date, datetime.time, datetime.timedelta)
_PLAIN += (uuid.UUID, decimal.Decimal)


def scrub(value: Any) -> Any:
    """A value of an extra field, redacted: text, containers item by item (a
    secret-named key loses its value), anything else as its redacted text."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {
            key: REDACTED if _SECRET_KEY.match(str(key)) else scrub(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(item) for item in value]
    return redact(str(value))  # e.g. the HttpRequest django.request attaches


# Every attribute a LogRecord has of its own; the rest are `extra` fields.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class RedactSecrets(logging.Filter):
    """Gives its handler a redacted copy of the record (Python 3.12 filters may);
    the record itself is left as logged, for any other handler that needs its
    exception or request (every handler of ours carries this filter)."""

    def filter(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        if isinstance(record.msg, Mapping):  # a dict message, as the JSON formatter allows
            record.msg = scrub(record.msg)
            record.args = None
        else:
            try:
                message = record.getMessage()
            except Exception:  # a bad format string: keep its parts, redacted
                message = f"{record.msg} {record.args!r}"
            record.msg, record.args = redact(str(message)), None
        if record.exc_info:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            # The formatters print exc_text when there is no exc_info to format again.
            record.exc_text, record.exc_info = redact(text), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in _RECORD_FIELDS:
                setattr(record, name, REDACTED if _SECRET_KEY.match(name) else scrub(value))
        return record
