"""A local HTTP file server for the downloader's tests and benchmark, loopback only.

It serves one generated file (`Content`: deterministic bytes of any size, made on
the fly, so a 512 MiB file costs no memory or disk) with what model hosts do:
Range requests answered 206, ETag and Last-Modified, If-Range, HEAD. It paces
each response to a rate per connection, counts every body byte it sends, and
records every request with its headers, and the most requests it answered at once
(`max_active`). `Faults` make it misbehave on purpose:
a status for everything (401), no range support, HEAD refused, no size, a
connection dropped mid-range, 503 with Retry-After, a file that changes after
some bytes, a redirect to a second listener of the same server on 127.0.0.2
(another host, as far as a client can tell).

    with RangeServer(Content(32 * MiB)) as server:
        url = server.url("model.safetensors")
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MiB = 1024 * 1024
BLOCK = MiB
WRITE = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class Content:
    """`size` bytes: block k of 1 MiB is a seeded random MiB with k (and the seed) in
    its first 16 bytes, so bytes written at a wrong offset change the hash."""

    def __init__(self, size: int, seed: int = 1) -> None:
        self.size = size
        self.seed = seed
        self._block = random.Random(seed).randbytes(BLOCK)
        self.etag = f'"v{seed}-{size}"'
        self.last_modified = formatdate(1_700_000_000 + seed, usegmt=True)

    def block(self, index: int) -> bytes:
        return index.to_bytes(8, "big") + self.seed.to_bytes(8, "big") + self._block[16:]

    def pieces(self, start: int, end: int):
        """Memoryviews of bytes start..end (inclusive), at most WRITE bytes each."""
        position = start
        while position <= end:
            index, offset = divmod(position, BLOCK)
            block = memoryview(self.block(index))
            stop = min(BLOCK, offset + (end - position + 1))
            for at in range(offset, stop, WRITE):
                yield block[at : min(stop, at + WRITE)]
            position += stop - offset

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        end = self.size - 1 if end is None else end
        return b"".join(bytes(p) for p in self.pieces(start, end))

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for piece in self.pieces(0, self.size - 1):
            digest.update(piece)
        return digest.hexdigest()


@dataclass
class Faults:
    status: int | None = None  # every request answered with this status (e.g. 401)
    no_ranges: bool = False  # Range ignored, whole file 200, no Accept-Ranges
    head_refused: bool = False  # HEAD answered 405
    unknown_size: bool = False  # no Content-Length (the body ends when the connection does)
    drop_after: int = 0  # a range response dropped after this many body bytes...
    drops: int = 0  # ...this many times
    busy: int = 0  # range GETs answered 503 this many times...
    retry_after: str = "1"  # ...with this Retry-After
    change_after: int | None = None  # once this many body bytes are served: a new file
    redirect: bool = False  # requests to the first listener are sent to the second
    token: str | None = None  # requests without "Authorization: Bearer <token>" get a 401


@dataclass
class Recorded:
    method: str
    listener: str  # "origin" (127.0.0.1) or "other" (127.0.0.2)
    path: str
    headers: dict[str, str]
    status: int = 0
    at: float = 0.0
    sent: int = 0


@dataclass
class _State:
    content: Content
    faults: Faults
    rate: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[Recorded] = field(default_factory=list)
    bytes_served: int = 0
    # Requests being answered now: from the request read until just before the last
    # byte of the answer goes out (or the connection is cut), never after the client
    # can have it all. A client holding a slot for each request it makes therefore
    # never shows more here than it held at once.
    active: int = 0
    max_active: int = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Listener

    def log_message(self, format: str, *args) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, *, head: bool) -> None:
        state = self.server.state
        record = Recorded(
            self.command,
            self.server.name,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            at=time.monotonic(),
        )
        with state.lock:
            state.requests.append(record)
            content, faults = state.content, state.faults
            state.active += 1
            state.max_active = max(state.max_active, state.active)
        self._counted = True
        try:
            self._respond(record, content, faults, head)
        finally:
            self._answered()

    def _answered(self) -> None:
        """The request stops counting as active (once): called before the answer's last
        write, so that a paced response's sleep after it does not count either."""
        if self._counted:
            self._counted = False
            with self.server.state.lock:
                self.server.state.active -= 1

    def _respond(self, record: Recorded, content: Content, faults: Faults, head: bool) -> None:
        if faults.status:
            self._empty(record, faults.status)
        elif faults.token and record.headers.get("authorization") != f"Bearer {faults.token}":
            self._empty(record, 401, {"WWW-Authenticate": "Bearer"})
        elif faults.redirect and self.server.name == "origin":
            self._empty(record, 302, {"Location": self.server.other_base + self.path})
        elif head and faults.head_refused:
            self._empty(record, 405)
        else:
            self._send_file(record, content, faults, head)

    def _empty(self, record: Recorded, status: int, headers: dict[str, str] | None = None):
        record.status = status
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self._answered()
        self.end_headers()

    def _send_file(self, record: Recorded, content: Content, faults: Faults, head: bool):
        state = self.server.state
        start, end, status = 0, content.size - 1, 200
        wanted = _RANGE.match(self.headers.get("Range", ""))
        if_range = self.headers.get("If-Range")
        fresh = if_range is None or if_range in (content.etag, content.last_modified)
        if wanted and not faults.no_ranges and not faults.unknown_size and fresh:
            start = int(wanted.group(1))
            end = min(int(wanted.group(2)) if wanted.group(2) else end, content.size - 1)
            if start >= content.size:
                self._empty(record, 416, {"Content-Range": f"bytes */{content.size}"})
                return
            status = 206
            if not head:
                with state.lock:
                    busy = faults.busy > 0
                    faults.busy -= busy
                if busy:
                    self._empty(record, 503, {"Retry-After": faults.retry_after})
                    return
        record.status = status
        self.send_response(status)
        self.send_header("ETag", content.etag)
        self.send_header("Last-Modified", content.last_modified)
        if not faults.no_ranges and not faults.unknown_size:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{content.size}")
        if faults.unknown_size:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(end - start + 1))
        if head:
            self._answered()
        self.end_headers()
        if not head:
            self._send_body(record, content, faults, start, end, dropping=status == 206)

    def _send_body(self, record, content, faults, start, end, *, dropping: bool) -> None:
        state = self.server.state
        with state.lock:
            drop = dropping and faults.drops > 0
            faults.drops -= drop
        began = time.monotonic()
        length = end - start + 1
        for piece in content.pieces(start, end):
            if drop and record.sent + len(piece) > faults.drop_after:
                piece = piece[: max(0, faults.drop_after - record.sent)]
            if record.sent + len(piece) >= (min(length, faults.drop_after) if drop else length):
                self._answered()  # the last bytes (or the last before the cut)
            try:
                self.wfile.write(piece)
            except OSError:  # the client went away
                self.close_connection = True
                return
            record.sent += len(piece)
            with state.lock:
                state.bytes_served += len(piece)
                if faults.change_after is not None and state.bytes_served >= faults.change_after:
                    faults.change_after = None
                    state.content = Content(content.size, content.seed + 1)
            if drop and record.sent >= faults.drop_after:
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if state.rate:
                ahead = record.sent / state.rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)


class _Listener(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, host: str, name: str, state: _State) -> None:
        super().__init__((host, 0), _Handler)
        self.name = name
        self.state = state
        self.other_base = ""


class RangeServer:
    """The server on 127.0.0.1 (the origin) and 127.0.0.2 (the redirect target)."""

    def __init__(self, content: Content, *, faults: Faults | None = None, rate: float = 0) -> None:
        self.state = _State(content, faults or Faults(), rate)
        self.origin = _Listener("127.0.0.1", "origin", self.state)
        self.other = _Listener("127.0.0.2", "other", self.state)
        self.origin.other_base = f"http://127.0.0.2:{self.other.server_address[1]}"
        self._threads = [
            threading.Thread(
                target=listener.serve_forever, daemon=True, kwargs={"poll_interval": 0.05}
            )
            for listener in (self.origin, self.other)
        ]

    def __enter__(self) -> RangeServer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for listener in (self.origin, self.other):
            listener.shutdown()
            listener.server_close()

    def url(self, name: str = "model.safetensors") -> str:
        return f"http://127.0.0.1:{self.origin.server_address[1]}/files/{name}"

    @property
    def content(self) -> Content:
        return self.state.content

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def bytes_served(self) -> int:
        with self.state.lock:
            return self.state.bytes_served

    @property
    def max_active(self) -> int:
        """The most requests answered at once so far."""
        with self.state.lock:
            return self.state.max_active

    @property
    def requests(self) -> list[Recorded]:
        with self.state.lock:
            return list(self.state.requests)

    def set_rate(self, rate: float) -> None:
        self.state.rate = rate
