"""The prompt queue: heap order, execution order, the number counter, statuses."""

from __future__ import annotations

from servers.simulator.prompt_queue import PromptQueue, QueueItem


def _item(number: float, prompt_id: str) -> QueueItem:
    return QueueItem(number, prompt_id, {}, {}, ["1"])


async def test_pending_is_in_heap_order_and_runs_in_number_order() -> None:
    queue = PromptQueue(lambda: None)
    # The capture: P2 normal (13), P3 front (-14), P4 number -100.
    for item in (_item(13, "P2"), _item(-14, "P3"), _item(-100.0, "P4")):
        queue.put(item)
    assert [(i.number, i.prompt_id) for i in queue.pending()] == [
        (-100.0, "P4"),
        (13, "P2"),
        (-14, "P3"),
    ]
    order = []
    for _ in range(3):
        got = await queue.get()
        assert got is not None
        order.append(got[0].prompt_id)
    assert order == ["P4", "P3", "P2"]


def test_counter_advances_without_number_and_front_negates() -> None:
    queue = PromptQueue(lambda: None)
    assert queue.next_number({}) == 0
    assert queue.next_number({"front": True}) == -1
    explicit = queue.next_number({"number": -100})
    assert explicit == -100.0
    assert isinstance(explicit, float)
    assert queue.next_number({}) == 2


async def test_running_item_counts_as_remaining_until_done() -> None:
    queue = PromptQueue(lambda: None)
    queue.put(_item(0, "P1"))
    got = await queue.get()
    assert got is not None
    assert queue.remaining() == 1
    assert [i.prompt_id for i in queue.running()] == ["P1"]
    queue.task_done(got[1])
    assert queue.remaining() == 0


def test_deleting_the_last_pending_item_reports_twice() -> None:
    changes: list[int] = []
    queue = PromptQueue(lambda: changes.append(queue.remaining()))
    queue.put(_item(0, "P1"))
    queue.put(_item(1, "P2"))
    changes.clear()
    assert queue.delete("P1")
    assert changes == [1]
    assert queue.delete("P2")
    assert changes == [1, 0, 0]


def test_deleting_an_unknown_id_changes_nothing() -> None:
    changes: list[int] = []
    queue = PromptQueue(lambda: changes.append(queue.remaining()))
    queue.put(_item(0, "P1"))
    assert not queue.delete("nope")
    assert changes == [1]


def test_clear_removes_all_pending_with_one_report() -> None:
    changes: list[int] = []
    queue = PromptQueue(lambda: changes.append(queue.remaining()))
    queue.put(_item(0, "P1"))
    queue.put(_item(1, "P2"))
    changes.clear()
    queue.wipe()
    assert changes == [0]
    assert queue.pending() == []
