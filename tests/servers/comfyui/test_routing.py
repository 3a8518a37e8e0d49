"""Per-prompt routing and the buffer for events that outrun the POST /prompt reply."""

from __future__ import annotations

import asyncio

import pytest

from servers.comfyui import (
    Executing,
    ExecutionStart,
    ExecutionSuccess,
    Progress,
    Reconnected,
    Status,
)
from servers.comfyui.routing import PromptRouter, Subscription

from .fakes import FakeClock


def start(prompt_id: str) -> ExecutionStart:
    return ExecutionStart(prompt_id=prompt_id, timestamp=1)


def end(prompt_id: str) -> Executing:
    return Executing(prompt_id=prompt_id, node=None)


async def drain(sub: Subscription) -> list:
    return [event async for event in sub]


async def test_events_before_the_subscription_are_replayed_first():
    router = PromptRouter()
    router.route(start("p1"))
    sub = router.subscribe("p1")
    router.route(ExecutionSuccess(prompt_id="p1"))
    router.route(end("p1"))
    assert await drain(sub) == [start("p1"), ExecutionSuccess(prompt_id="p1"), end("p1")]


async def test_a_whole_run_that_finished_before_subscribing_is_delivered_and_ends():
    router = PromptRouter()
    for event in (start("p1"), Progress(prompt_id="p1", value=1, max=2), end("p1")):
        router.route(event)
    sub = router.subscribe("p1")
    assert len(await drain(sub)) == 3
    assert sub.finished
    assert router.subscribed == 0
    assert router.buffered_prompts == 0


async def test_subscription_ends_after_the_prompts_final_executing():
    router = PromptRouter()
    sub = router.subscribe("p1")
    router.route(end("p1"))
    router.route(start("p1"))  # a re-run of the same id is not this subscription's
    assert await drain(sub) == [end("p1")]
    assert router.buffered_prompts == 1


async def test_events_of_other_prompts_do_not_reach_a_subscription():
    router = PromptRouter()
    sub = router.subscribe("mine")
    router.route(start("other"))
    router.route(Status(queue_remaining=1))
    assert sub.pending() == []
    assert router.buffered_prompts == 1


async def test_buffered_prompts_expire():
    clock = FakeClock()
    router = PromptRouter(buffer_ttl=60, clock=clock)
    router.route(start("old"))
    clock.advance(61)
    router.route(start("new"))
    assert router.buffered_prompts == 1
    assert router.dropped == 1
    assert router.subscribe("old").pending() == []


async def test_buffer_is_bounded_in_prompts_and_in_events_per_prompt():
    router = PromptRouter(max_buffered_prompts=2, max_events_per_prompt=3)
    for prompt_id in ("a", "b", "c"):
        router.route(start(prompt_id))
    assert router.buffered_prompts == 2
    for value in range(5):
        router.route(Progress(prompt_id="c", value=value, max=5))
    assert [e.value for e in router.subscribe("c").pending()] == [2, 3, 4]
    assert router.dropped == 1 + 3


async def test_connection_events_reach_every_subscription():
    router = PromptRouter()
    subs = [router.subscribe("p1"), router.subscribe("p2")]
    event = Reconnected(url="ws://x/ws", downtime=1.0, reconnects=1)
    router.broadcast(event)
    assert [s.pending() for s in subs] == [[event], [event]]


async def test_one_subscriber_per_prompt():
    router = PromptRouter()
    router.subscribe("p1")
    with pytest.raises(ValueError, match="p1"):
        router.subscribe("p1")


async def test_closing_a_subscription_frees_the_prompt_id():
    router = PromptRouter()
    async with router.subscribe("p1"):
        pass
    router.subscribe("p1")


async def test_closing_the_router_ends_waiting_consumers():
    router = PromptRouter()
    sub = router.subscribe("p1")
    waiter = asyncio.create_task(drain(sub))
    await asyncio.sleep(0)
    router.close()
    assert await asyncio.wait_for(waiter, 5) == []


async def test_a_slow_consumer_loses_the_oldest_events_not_the_newest():
    sub = Subscription(maxsize=2)
    for value in range(4):
        sub.put(Progress(prompt_id="p", value=value, max=4))
    assert [e.value for e in sub.pending()] == [2, 3]
    assert sub.dropped == 2
