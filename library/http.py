"""The downloader's one outbound HTTP layer: what it sends to model hosts, and the
one error type it raises.

- Redirects are followed here, by hand, so that the user's custom headers (an
  auth token, usually) go only to the download URL's own origin (scheme, host,
  port). A redirect to a CDN gets the request without them, as browsers and
  curl do for `Authorization`.
- Every request has timeouts; a failure is a `FetchError` that says whether
  trying again can help (`permanent`) and how long the server asked us to wait
  (`retry_after`). Messages name the host and the status, never a header.
- httpx's own line per request is dropped while a download runs: it holds the
  full URL, whose query string may be a signed, short-lived credential (CDN
  redirects), and a large file makes a thousand of them. The downloader logs
  its own lines, naming the host only.
- Concurrency per host is bounded over all worker processes by
  `library.hostlimit`, on top of each download's own `connections`.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx

USER_AGENT = "ComfyWeb-library/1.0"
MAX_REDIRECTS = 10
# A server asking for more than this is treated as asking for this.
RETRY_AFTER_CAP = 300.0
TIMEOUT = httpx.Timeout(connect=15.0, read=60.0, write=30.0, pool=60.0)
REDIRECTS = (301, 302, 303, 307, 308)
# HEAD answered with these: ask again with a one-byte GET (some hosts sign GET only).
HEAD_REFUSED = (400, 403, 405, 501)
# Advice for a 401/403 (not a secret, whatever the linter's S105 thinks of the name).
ACCESS_HINT = "the file may need a token: add an Authorization header to the download"


_downloading = contextvars.ContextVar("library_downloading", default=False)


class _QuietDuringDownloads(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _downloading.get()


logging.getLogger("httpx").addFilter(_QuietDuringDownloads())


class FetchError(Exception):
    """A request that failed; `permanent` when asking again will not help."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status


type Origin = tuple[str, str, int]


def origin_of(url: str | httpx.URL) -> Origin:
    """(scheme, host, port) with the scheme's default port filled in."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return (parsed.scheme, parsed.host.lower(), port)


def host_of(url: str | httpx.URL) -> str:
    return httpx.URL(url).host


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, delay), RETRY_AFTER_CAP)


def raise_for_status(response: httpx.Response) -> None:
    """Nothing for 2xx; else the FetchError that the status means."""
    status = response.status_code
    if 200 <= status < 300:
        return
    where = f"HTTP {status} from {response.url.host}"
    if status in (401, 403):
        raise FetchError(f"{where}: access denied; {ACCESS_HINT}", permanent=True, status=status)
    if status in (404, 410):
        raise FetchError(f"{where}: no such file", permanent=True, status=status)
    if status in (408, 425, 429) or status >= 500:
        raise FetchError(
            f"{where}",
            permanent=False,
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
            status=status,
        )
    raise FetchError(where, permanent=True, status=status)


def transport_error(error: Exception, url: str | httpx.URL) -> FetchError:
    """A connection that failed or dropped: worth another try."""
    return FetchError(f"{type(error).__name__} talking to {host_of(url)}", permanent=False)


@dataclass(frozen=True)
class Remote:
    """What a probe learned about the file."""

    size: int | None
    ranges: bool
    etag: str
    last_modified: str

    @staticmethod
    def validators_of(response: httpx.Response) -> tuple[str, str]:
        return response.headers.get("etag", ""), response.headers.get("last-modified", "")


def content_range_total(value: str | None) -> tuple[int, int, int | None] | None:
    """`bytes 0-99/1000` → (0, 99, 1000); `/*` total → None; None if unreadable."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        span, total = value[6:].split("/", 1)
        first, last = span.split("-", 1)
        return int(first), int(last), None if total.strip() == "*" else int(total)
    except ValueError:
        return None


class Fetcher:
    """One download's HTTP client: its URL, its custom headers, its connection pool."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        connections: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._origin = origin_of(url)
        self._headers = dict(headers or {})
        pool = connections + 2  # the probe and a redirect hop beside the range requests
        self.client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=TIMEOUT,
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            transport=transport,
        )

    async def __aenter__(self) -> Fetcher:
        # Set in the caller's context: the tasks it starts from here on inherit it.
        self._quiet = _downloading.set(True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        _downloading.reset(self._quiet)

    def _headers_for(self, url: httpx.URL, extra: Mapping[str, str]) -> dict[str, str]:
        if origin_of(url) == self._origin:
            return {**self._headers, **extra}
        return dict(extra)

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, extra: Mapping[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """Send `method` to the URL, following redirects; yields the final response
        (body not read). Transport failures become transient FetchErrors."""
        url = httpx.URL(self.url)
        for _hop in range(MAX_REDIRECTS + 1):
            request = self.client.build_request(
                method, url, headers=self._headers_for(url, extra or {})
            )
            try:
                response = await self.client.send(request, stream=True)
            except httpx.HTTPError as error:
                raise transport_error(error, url) from None
            location = response.headers.get("location")
            if response.status_code in REDIRECTS and location:
                await response.aclose()
                url = url.join(location)
                if url.scheme not in ("http", "https"):
                    raise FetchError(f"redirect to a {url.scheme} URL", permanent=True)
                continue
            try:
                yield response
            finally:
                await response.aclose()
            return
        raise FetchError(f"more than {MAX_REDIRECTS} redirects", permanent=True)

    async def probe(self) -> Remote:
        """Size, range support and validators: HEAD, or a one-byte GET if HEAD is refused
        or does not say whether ranges work."""
        async with self.stream("HEAD") as response:
            if response.status_code not in HEAD_REFUSED:
                raise_for_status(response)
                etag, modified = Remote.validators_of(response)
                length = response.headers.get("content-length")
                accepts = response.headers.get("accept-ranges", "").lower()
                if accepts == "bytes" and length and length.isdigit():
                    return Remote(int(length), True, etag, modified)
                if accepts == "none":
                    size = int(length) if length and length.isdigit() else None
                    return Remote(size, False, etag, modified)
        async with self.stream("GET", {"Range": "bytes=0-0"}) as response:
            raise_for_status(response)
            etag, modified = Remote.validators_of(response)
            if response.status_code == 206:
                parsed = content_range_total(response.headers.get("content-range"))
                if parsed is not None and parsed[2] is not None:
                    return Remote(parsed[2], True, etag, modified)
            length = response.headers.get("content-length")
            size = (
                int(length) if response.status_code == 200 and length and length.isdigit() else None
            )
            return Remote(size, False, etag, modified)
