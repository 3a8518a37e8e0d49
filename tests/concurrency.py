"""Several threads at once on the test database, each with its own connection, as
several processes would (dispatch, placement)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from django.db import close_old_connections, connections


@contextlib.contextmanager
def threads_on_a_file_database(path: Path) -> Iterator[None]:
    """Let other threads share the test database the way processes share a real one.

    The SQLite test database lives in memory with a shared cache, where
    concurrent writers fail at once ("database table is locked") instead of
    waiting. For the duration, new connections (other threads) open a file copy
    instead, with the project's WAL/IMMEDIATE/busy-timeout settings, as
    production's processes do; afterwards the file is copied back. The calling
    thread must not touch the database inside the block. (On PostgreSQL this
    is unnecessary and does nothing.)
    """
    connection = connections["default"]
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    memory = connection.connection
    with sqlite3.connect(path) as copy:
        memory.backup(copy)
    name = connection.settings_dict["NAME"]
    connection.settings_dict["NAME"] = str(path)
    try:
        yield
    finally:
        connection.settings_dict["NAME"] = name
        with sqlite3.connect(path) as copy:
            copy.backup(memory)


def in_threads(count: int, work: Callable[[], object], tmp_path) -> list[object]:
    """Run `work` in `count` threads released together; their results."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = work()
        except BaseException as error:
            errors.append(error)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    with threads_on_a_file_database(tmp_path / "db.sqlite3"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors
    return results
