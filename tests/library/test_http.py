"""The downloader's HTTP layer, piece by piece: Retry-After, origins, Content-Range,
and what each status means."""

from __future__ import annotations

from email.utils import formatdate

import httpx
import pytest

from library.http import (
    RETRY_AFTER_CAP,
    FetchError,
    content_range_total,
    origin_of,
    raise_for_status,
    retry_after_seconds,
)


def test_retry_after_in_seconds_or_as_an_http_date():
    now = 1_700_000_000.0
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds(formatdate(now + 30, usegmt=True), now) == pytest.approx(30.0)
    assert retry_after_seconds(formatdate(now - 30, usegmt=True), now) == 0.0
    assert retry_after_seconds("86400", now) == RETRY_AFTER_CAP
    assert retry_after_seconds(None, now) is None
    assert retry_after_seconds("soon", now) is None


def test_an_origin_is_scheme_host_and_port_with_defaults():
    assert origin_of("https://Example.org/x") == origin_of("https://example.org:443/y")
    assert origin_of("http://127.0.0.1/x") == ("http", "127.0.0.1", 80)
    assert origin_of("http://127.0.0.1:8080/x") != origin_of("http://127.0.0.2:8080/x")
    assert origin_of("http://h/x") != origin_of("https://h/x")


def test_content_range_is_read_or_refused():
    assert content_range_total("bytes 0-99/1000") == (0, 99, 1000)
    assert content_range_total("bytes 5-9/*") == (5, 9, None)
    assert content_range_total("bytes */1000") is None
    assert content_range_total("items 0-1/2") is None
    assert content_range_total(None) is None


def status(code: int, **headers: str) -> FetchError | None:
    response = httpx.Response(code, headers=headers, request=httpx.Request("GET", "http://h/f"))
    try:
        raise_for_status(response)
    except FetchError as error:
        return error
    return None


def test_what_each_status_means():
    assert status(206) is None
    assert status(401).permanent
    assert "token" in str(status(403))
    assert status(404).permanent
    assert status(416).permanent
    busy = status(503, **{"Retry-After": "3"})
    assert not busy.permanent
    assert busy.retry_after == 3.0
    assert not status(429).permanent
    assert status(500).retry_after is None
