"""What Linux says about a process, read from /proc, and whether a port is free.

A pid alone names a process only while it lives: once it exits the number may
be given to another. A pid together with its start time (`/proc/<pid>/stat`
field 22, clock ticks after boot) names one process for good, so the launcher
records both and signals a process only while both still match.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str  # R, S, D, Z (zombie: exited, not reaped yet), ...
    pgrp: int
    starttime: int


def stat(pid: int) -> ProcStat | None:
    """The process's /proc stat, or None if there is no such process."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return ProcStat(pid=pid, state=fields[0], pgrp=int(fields[2]), starttime=int(fields[19]))


def start_time(pid: int) -> int | None:
    found = stat(pid)
    return found.starttime if found else None


def cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_alive(pid: int, starttime: int) -> bool:
    """The process that started at `starttime` still runs (a zombie has exited)."""
    found = stat(pid)
    return found is not None and found.starttime == starttime and found.state != "Z"


def group_members(pgid: int) -> list[ProcStat]:
    """Every live process of the process group (a scan of /proc)."""
    members = []
    for entry in PROC.iterdir():
        found = stat(int(entry.name)) if entry.name.isdigit() else None
        if found is not None and found.pgrp == pgid and found.state != "Z":
            members.append(found)
    return members


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on host:port (bound the way a server binds it).

    SO_REUSEADDR as servers set it: connections of a process that just stopped,
    lingering in TIME_WAIT, do not make the port look taken; a listener does.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def signal_group(pgid: int, sig: int) -> bool:
    """Signal the process group; False if it has no process left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
