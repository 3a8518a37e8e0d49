"""An instance's console: its log read as it grows, rotated under a writer that
appends, kept as a ring buffer in Redis and pushed to staff only; the model-paths
file ComfyUI is given."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth.models import AnonymousUser

from comfyweb import topics
from servers.local import console, logfile, modelpaths, panel
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_the_tail_reads_only_new_whole_lines_as_a_terminal_shows_them(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"old line\n")
    tail = logfile.LogTail.at_end(log)
    with log.open("ab") as out:
        out.write(b"loading\r 10%\r 50%\r100%\nhalf a li")
    assert tail.read_new() == ["100%"]
    with log.open("ab") as out:
        out.write(b"ne\r\n")
    assert tail.read_new() == ["half a line"]
    assert tail.read_new() == []


def test_rotation_copies_and_truncates_under_an_appending_writer(tmp_path):
    log = tmp_path / "a.log"
    writer = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(writer, b"x" * 100 + b"\n")
        tail = logfile.LogTail.at_end(log)
        for _ in range(4):
            assert logfile.rotate_if_big(log, max_bytes=50, backups=2)
            tail.rotated()
            os.write(writer, b"y" * 100 + b"\n")
        os.write(writer, b"after\n")
    finally:
        os.close(writer)
    # The writer's next line landed at the start of the truncated file, not at its old
    # offset; two backups kept, the oldest dropped.
    assert log.read_bytes() == b"y" * 100 + b"\nafter\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log", "a.log.1", "a.log.2"]
    assert tail.read_new() == ["y" * 100, "after"]


def test_the_last_lines_of_a_big_log(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {n}\n" for n in range(20_000)))
    assert logfile.last_lines(log, 3) == ["line 19997", "line 19998", "line 19999"]


def test_the_ring_buffer_keeps_the_last_lines():
    console.forget(4242)
    console.append(4242, [f"line {n}" for n in range(console.LINES_KEPT + 20)])
    tail = console.console_tail(4242, 1000)
    assert len(tail) == console.LINES_KEPT
    assert tail[-1] == f"line {console.LINES_KEPT + 19}"
    assert console.console_tail(4242, 2) == [f"line {console.LINES_KEPT + n}" for n in (18, 19)]
    console.forget(4242)
    assert console.console_tail(4242, 10) == []


def test_only_staff_may_follow_an_instance_and_its_console():
    topic = topics.get(panel.TOPIC)
    staff = make_user("root", staff=True)
    member = make_user("ada")
    assert topic.allowed(staff, "7")
    assert not topic.allowed(member, "7")
    assert not topic.allowed(AnonymousUser(), "7")
    assert not topic.allowed(staff, None)


def test_the_model_paths_point_every_model_folder_at_the_library(tmp_path):
    written = modelpaths.write(tmp_path / "paths.yaml", tmp_path / "my models")
    text = written.read_text()
    assert text.startswith(f'comfyweb_library:\n    base_path: "{tmp_path / "my models"}"\n')
    assert "    checkpoints: checkpoints\n" in text
    assert "    loras: loras\n" in text
    assert "custom_nodes" not in text
