"""A webhook receiver on 127.0.0.1 in a thread, for tests and the bench.

It verifies every request as the Standard Webhooks spec tells a receiver to —
written here from the spec, apart from `webhooks.signing`: the signed content is
`{webhook-id}.{webhook-timestamp}.{body}`, the key the base64 of the secret after
`whsec_`, and the header a space-separated list of `v1,<base64>` signatures, any
of which may match (constant-time compare); the timestamp must be within five
minutes. Answers follow a script (status codes, a redirect), then 200.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE = 300


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and stamp and signatures and secret.startswith("whsec_")):
        return False
    if abs(time.time() - int(stamp)) > TOLERANCE:
        return False
    key = base64.b64decode(secret[len("whsec_") :])
    content = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return True
    return False


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived

    @property
    def payload(self) -> dict:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """`script`: answers for the first requests (an int status, or ("redirect", path))."""

    script: list = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                entry = Received(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
                )
                answer = receiver._record(entry)
                if isinstance(answer, tuple):
                    self.send_response(302)
                    self.send_header("location", answer[1])
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                text = f"answer {answer}".encode()
                self.send_response(answer)
                self.send_header("content-length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _record(self, entry: Received):
        with self._lock:
            self.received.append(entry)
            answer = self.script.pop(0) if self.script else 200
            self._lock.notify_all()
        return answer

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        with self._lock:
            self._lock.wait_for(lambda: len(self.received) >= count, timeout=timeout)
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
