"""An instance's log file: its console output, read as it grows, rotated by size.

The child writes its stdout and stderr to the file with O_APPEND, so the launcher
can rotate it under the child by copy-and-truncate (the child's next write lands
at the new end of the file, offset 0) without restarting it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.utils import timezone

MAX_LINE = 2000  # characters of one console line kept
READ_CHUNK = 256 * 1024  # bytes read per look, so one chatty instance cannot stall the loop


def clean_line(raw: bytes) -> str:
    """One console line as a terminal would show it: after the last carriage return
    (progress bars redraw themselves with \\r), undecodable bytes replaced."""
    text = raw.rstrip(b"\r").rsplit(b"\r", 1)[-1].decode(errors="replace")
    return text[:MAX_LINE]


@dataclass
class LogTail:
    """Reads the lines added to a log file since the last look."""

    path: Path
    offset: int = 0
    inode: int | None = None
    partial: bytes = b""

    @classmethod
    def at_end(cls, path: Path) -> LogTail:
        try:
            found = path.stat()
        except FileNotFoundError:
            return cls(path)
        return cls(path, offset=found.st_size, inode=found.st_ino)

    def read_new(self) -> list[str]:
        try:
            found = self.path.stat()
        except FileNotFoundError:
            return []
        if found.st_ino != self.inode or found.st_size < self.offset:
            # A new file, or truncated by a rotation we did not do: from its start.
            self.inode, self.offset, self.partial = found.st_ino, 0, b""
        if found.st_size == self.offset:
            return []
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read(READ_CHUNK)
        self.offset += len(data)
        *lines, rest = (self.partial + data).split(b"\n")
        # An unfinished line: keep what a terminal would show, bounded.
        head, sep, _ = rest.rstrip(b"\r").rpartition(b"\r")
        self.partial = rest[len(head) + len(sep) :]
        if len(self.partial) > MAX_LINE * 4:
            lines.append(self.partial)
            self.partial = b""
        return [clean_line(line) for line in lines]

    def rotated(self) -> None:
        """We truncated the file ourselves: read it from its start again."""
        self.offset, self.partial = 0, b""


def rotate_if_big(path: Path, max_bytes: int, backups: int) -> bool:
    """Copy-and-truncate `path` to `path.1` (older ones shift up to `path.<backups>`)
    once it is over `max_bytes`; True if it did."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for number in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{number}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{number + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    os.truncate(path, 0)
    return True


def last_lines(path: Path, count: int, *, window: int = 64 * 1024) -> list[str]:
    """The last `count` lines of the file (read from its last `window` bytes)."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - window))
            data = log.read()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    if size > window:
        lines = lines[1:]  # the first one is cut
    if lines and not lines[-1]:
        lines.pop()
    return [clean_line(line) for line in lines[-count:]]


def write_note(path: Path, text: str, now: datetime | None = None) -> None:
    """A line of the launcher's own in the instance's log (and so in its console)."""
    stamp = timezone.localtime(now or timezone.now()).strftime("%Y-%m-%d %H:%M:%S")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        log.write(f"[launcher {stamp}] {text}\n")
