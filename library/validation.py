"""Rules for what a user may ask the library to fetch: pure functions, no I/O.

Everything here runs on hostile input (the API and the pages pass what people
typed). A filename becomes a path under the library, so it must be one plain
name; headers go out on the wire, so they must be well-formed and must not
override the ones the downloader itself controls. Error messages name the
problem, never a header's value (it is usually a token).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ValidationError

from library.folders import FOLDERS

MAX_FILENAME = 255
MAX_HEADERS = 32
MAX_HEADER_VALUE = 8192
# RFC 9110 `token`: what a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Headers the downloader sets itself, or that belong to the connection, not the request.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "range",
        "if-range",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "accept-encoding",
        "proxy-connection",
    }
)


def validate_folder(folder: str) -> None:
    if folder not in FOLDERS:
        raise ValidationError(
            "not a ComfyUI model folder (one of: %(names)s)",
            code="folder",
            params={"names": ", ".join(FOLDERS)},
        )


def validate_filename(name: str) -> None:
    """One plain file name: no path separators, no NUL, not hidden, not `.`/`..`."""
    if not isinstance(name, str) or not name:
        raise ValidationError("a file name is required", code="required")
    if len(name) > MAX_FILENAME or len(name.encode("utf-8", "surrogatepass")) > MAX_FILENAME:
        raise ValidationError("longer than 255 characters", code="max_length")
    if "/" in name or "\\" in name:
        raise ValidationError("must be a plain name, without / or \\", code="separator")
    if "\x00" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValidationError("must not contain control characters", code="control")
    if name.startswith("."):  # also ".", ".." and hidden files
        raise ValidationError("must not start with a dot", code="hidden")
    if ".." in name:
        raise ValidationError("must not contain ..", code="dots")
    if name.endswith(".part"):
        raise ValidationError("must not end in .part (unfinished downloads do)", code="part")
    if name != name.strip():
        raise ValidationError("must not start or end with spaces", code="spaces")


def validate_sha256(value: str) -> None:
    if not _SHA256.match(value or ""):
        raise ValidationError("must be 64 lowercase hexadecimal digits", code="sha256")


def validate_headers(headers: Any) -> None:
    """A flat mapping of header name to string value; never echoes a value."""
    if not isinstance(headers, Mapping):
        raise ValidationError("must be an object of header names to values", code="type")
    if len(headers) > MAX_HEADERS:
        raise ValidationError("at most %(n)d headers", code="count", params={"n": MAX_HEADERS})
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValidationError("a header name is not a valid HTTP token", code="name")
        if name.lower() in RESERVED_HEADERS:
            raise ValidationError(
                "%(name)s is set by the downloader", code="reserved", params={"name": name}
            )
        if not isinstance(value, str):
            raise ValidationError(
                "the value of %(name)s must be a string", code="value", params={"name": name}
            )
        if len(value) > MAX_HEADER_VALUE or any(c in value for c in "\r\n\x00"):
            raise ValidationError(
                "the value of %(name)s is too long or holds a line break",
                code="value",
                params={"name": name},
            )


def filename_from_url(url: str) -> str:
    """The last segment of the URL's path, percent-decoded ('' if there is none)."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    return unquote(path.rsplit("/", 1)[-1])


def normalise_sha256(value: str | None) -> str:
    return (value or "").strip().lower()
