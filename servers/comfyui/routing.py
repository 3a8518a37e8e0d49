"""Per-prompt delivery of events, with a buffer for prompts nobody asked for yet.

ComfyUI may send `execution_start` (even a whole short run) before the POST
/prompt reply has been read (PROTOCOL.md gotcha 1), so events for a prompt id
without a subscriber are held, bounded in count and age, and replayed to the
subscriber that comes for them.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .events import Event, is_prompt_end


class Subscription:
    """A bounded queue of events, consumed with `async for` or `await get()`.

    A slow consumer loses the *oldest* events (counted in `dropped`) rather than
    stalling the socket reader, which serves every prompt of the server. The
    iteration ends once `finish()` was called and the queue is drained.
    """

    def __init__(self, maxsize: int, on_close: Callable[[Subscription], None] | None = None):
        self._items: deque[Event] = deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self._finished = False
        self._on_close = on_close
        self.dropped = 0

    def put(self, event: Event) -> None:
        if self._finished:
            return
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(event)
        self._ready.set()

    def finish(self) -> None:
        """No more events will come; those queued can still be read."""
        self._finished = True
        self._ready.set()

    @property
    def finished(self) -> bool:
        return self._finished

    def close(self) -> None:
        """Stop receiving (and unregister); already queued events stay readable."""
        self.finish()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)

    def pending(self) -> list[Event]:
        """The events queued right now, without waiting."""
        return list(self._items)

    async def get(self) -> Event:
        """The next event; raises `StopAsyncIteration` when finished and drained."""
        while not self._items:
            if self._finished:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class _Held:
    first_seen: float
    events: deque[Event] = field(default_factory=deque)


class PromptRouter:
    """Routes events by `prompt_id` to subscriptions; holds the rest for a while."""

    def __init__(
        self,
        *,
        buffer_ttl: float = 60.0,
        max_buffered_prompts: int = 256,
        max_events_per_prompt: int = 1000,
        subscription_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = buffer_ttl
        self._max_prompts = max_buffered_prompts
        self._max_events = max_events_per_prompt
        self._subscription_size = subscription_size
        self._clock = clock
        self._subscribers: dict[str, Subscription] = {}
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self._closed = False
        self.dropped = 0  # held events lost to the bounds or to expiry

    def subscribe(self, prompt_id: str) -> Subscription:
        """Events of `prompt_id`, starting with any that arrived before this call.

        The subscription finishes by itself after the prompt's final
        `executing {node: null}`. One subscriber per prompt id at a time.
        """
        if prompt_id in self._subscribers:
            raise ValueError(f"prompt {prompt_id!r} already has a subscriber")
        sub = Subscription(self._subscription_size, on_close=lambda s: self._forget(prompt_id, s))
        if self._closed:
            sub.finish()
            return sub
        self._expire()
        self._subscribers[prompt_id] = sub
        held = self._held.pop(prompt_id, None)
        for event in held.events if held else ():
            self._deliver(prompt_id, sub, event)
        return sub

    def route(self, event: Event) -> bool:
        """Deliver or hold an event; False if it names no prompt."""
        prompt_id = event.prompt_id
        if prompt_id is None:
            return False
        sub = self._subscribers.get(prompt_id)
        if sub is not None:
            self._deliver(prompt_id, sub, event)
            return True
        self._hold(prompt_id, event)
        return True

    def broadcast(self, event: Event) -> None:
        """To every current subscription (used for connection events)."""
        for sub in list(self._subscribers.values()):
            sub.put(event)

    def close(self) -> None:
        self._closed = True
        for sub in list(self._subscribers.values()):
            sub.finish()
        self._subscribers.clear()
        self._held.clear()

    @property
    def subscribed(self) -> int:
        return len(self._subscribers)

    @property
    def buffered_prompts(self) -> int:
        return len(self._held)

    @property
    def buffered_events(self) -> int:
        return sum(len(h.events) for h in self._held.values())

    def _deliver(self, prompt_id: str, sub: Subscription, event: Event) -> None:
        sub.put(event)
        if is_prompt_end(event):
            sub.finish()
            self._forget(prompt_id, sub)

    def _forget(self, prompt_id: str, sub: Subscription) -> None:
        if self._subscribers.get(prompt_id) is sub:
            del self._subscribers[prompt_id]

    def _hold(self, prompt_id: str, event: Event) -> None:
        self._expire()
        held = self._held.get(prompt_id)
        if held is None:
            if len(self._held) >= self._max_prompts:
                _, oldest = self._held.popitem(last=False)
                self.dropped += len(oldest.events)
            held = self._held[prompt_id] = _Held(first_seen=self._clock())
        if len(held.events) >= self._max_events:
            held.events.popleft()
            self.dropped += 1
        held.events.append(event)

    def _expire(self) -> None:
        # Entries are in first-seen order, so the expired ones are at the front.
        deadline = self._clock() - self._ttl
        while self._held:
            prompt_id, held = next(iter(self._held.items()))
            if held.first_seen > deadline:
                break
            del self._held[prompt_id]
            self.dropped += len(held.events)
