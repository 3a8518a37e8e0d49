"""The run's length by the server's own clock, noted on the task's timeline by the monitor.

ComfyUI stamps `execution_start` and the message that ends a prompt
(`execution_success`, `execution_error`, `execution_interrupted`) with its own
clock (ms). Their difference is the time the prompt held the GPU, free of what
the events' transport and the monitor's own backlog add to the moment we see
them (a busy monitor can see a start late by a large part of a second). The
monitor notes the pair as the prompt ends, before the end moves the task, so the
accounting hook finds it with the attempt's other events.
"""

from __future__ import annotations

from tasks.transitions import record

KEY = "server_run_ms"


def note_server_run(task_id: int, started_ms: int | None, ended_ms: int | None) -> None:
    """Note (start, end) on the timeline; nothing when the monitor missed the start."""
    if started_ms is None or ended_ms is None or ended_ms < started_ms:
        return
    seconds = (ended_ms - started_ms) / 1000
    record(task_id, f"ran {seconds:.2f} s by the server's clock", {KEY: [started_ms, ended_ms]})
