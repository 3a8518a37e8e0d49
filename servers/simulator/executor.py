"""The worker: takes prompts off the queue and runs them, emitting ComfyUI's
message sequences (PROTOCOL.md §4) and writing history.

One prompt at a time, like ComfyUI's prompt_worker thread. The order of the
calls below *is* the protocol: execution_start, execution_cached, per node
progress_state(running) → executing → … → executed → progress_state(finished),
then execution_success | execution_error | execution_interrupted, history,
the final status and `executing {node: null}`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from servers.simulator import catalogue, nodes
from servers.simulator.aio import cancel_and_wait
from servers.simulator.cache import CacheEntry, NodeObjects, OutputCache
from servers.simulator.config import DataDirs, SimulatorConfig
from servers.simulator.faults import Faults
from servers.simulator.history import History
from servers.simulator.hub import Hub
from servers.simulator.images import tensor_repr
from servers.simulator.progress import ProgressRegistry
from servers.simulator.prompt_queue import PromptQueue, QueueItem
from servers.simulator.staging import ExecutionPlan

logger = logging.getLogger(__name__)

# Inputs the real nodes receive as "hidden" and that current_inputs leaves out.
_HIDDEN = {"unique_id", "prompt", "extra_pnginfo"}


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Run:
    """State of the prompt being executed."""

    item: QueueItem
    client_id: str | None
    registry: ProgressRegistry
    messages: list[list[Any]] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    results: dict[str, tuple[Any, ...]] = field(default_factory=dict)


class Executor:
    def __init__(
        self,
        hub: Hub,
        queue: PromptQueue,
        history: History,
        config: SimulatorConfig,
        dirs: DataDirs,
        faults: Faults | None = None,
    ):
        self.hub = hub
        self.faults = faults or Faults()
        self.queue = queue
        self.history = history
        self.config = config
        self.dirs = dirs
        self.cache = OutputCache()
        self.objects = NodeObjects()
        self.rng = random.Random(config.seed)  # noqa: S311 - simulation, not security
        self._interrupt = False
        self._task: asyncio.Task[None] | None = None
        self.running_prompt_id: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._worker())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def interrupt(self) -> None:
        """Set the flag the running node notices at its next check."""
        self._interrupt = True

    async def _worker(self) -> None:
        while True:
            got = await self.queue.get()
            if got is not None:
                item, task_id = got
                try:
                    await self._process(item, task_id)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # A simulator bug must not wedge the queue with a prompt
                    # that "runs" forever.
                    logger.exception("simulator: prompt %s crashed the worker", item.prompt_id)
                    if self.queue.is_running(task_id):
                        self.queue.task_done(task_id)
                        self.hub.queue_updated()
            flags = self.queue.take_flags()
            if flags.get("unload_models") or flags.get("free_memory"):
                # The models that held the VRAM are gone: prompts fit again.
                self.faults.out_of_memory_until_free = False
            if flags.get("free_memory"):
                self.cache.reset()
                self.objects.reset()

    async def _process(self, item: QueueItem, task_id: int) -> None:
        self.running_prompt_id = item.prompt_id
        try:
            run, success = await self._execute(item)
        finally:
            self.running_prompt_id = None
        outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        for node_id in item.prompt:
            entry = self.cache.get(node_id)
            if entry is not None and entry.ui is not None:
                outputs[node_id] = entry.ui["output"]
                meta[node_id] = entry.ui["meta"]
        self.queue.task_done(task_id)
        self.history.record(
            item.as_list(),
            outputs=outputs,
            meta=meta,
            status_str="success" if success else "error",
            completed=success,
            messages=run.messages,
        )
        self.hub.queue_updated()
        if run.client_id is not None:
            self.hub.send_sync(
                "executing", {"node": None, "prompt_id": item.prompt_id}, run.client_id
            )

    def _add_message(self, run: _Run, event: str, data: dict[str, Any], broadcast: bool) -> None:
        data = {**data, "timestamp": _now_ms()}
        run.messages.append([event, data])
        if run.client_id is not None or broadcast:
            self.hub.send_sync(event, data, run.client_id)

    async def _execute(self, item: QueueItem) -> tuple[_Run, bool]:
        # An interrupt that arrived while idle is forgotten here.
        self._interrupt = False
        client_id = item.extra_data.get("client_id")
        self.hub.client_id = client_id
        run = _Run(item, client_id, ProgressRegistry(self.hub, item.prompt_id, client_id))
        prompt_id = item.prompt_id
        self._add_message(run, "execution_start", {"prompt_id": prompt_id}, broadcast=False)
        self.cache.set_prompt(item.prompt, self.dirs.input)
        self.objects.set_prompt(item.prompt)
        cached = [n for n in item.prompt if self.cache.get(n) is not None]
        self._add_message(
            run, "execution_cached", {"nodes": cached, "prompt_id": prompt_id}, broadcast=False
        )
        plan = ExecutionPlan(
            item.prompt,
            is_cached=lambda n: self.cache.get(n) is not None,
            is_output=lambda n: catalogue.is_output_node(item.prompt[n]["class_type"]),
        )
        for output_id in item.outputs:
            plan.add_output(output_id)
        success = True
        # failure_rate: the first node that really executes raises (cached ones can't).
        doomed = self.config.failure_rate > 0 and self.rng.random() < self.config.failure_rate
        while not plan.empty():
            node_id = plan.pick()
            error = await self._run_node(run, node_id, doomed)
            if error is not None:
                self._report_failure(run, node_id, error)
                success = False
                break
            plan.complete(node_id)
        if success:
            self._add_message(run, "execution_success", {"prompt_id": prompt_id}, broadcast=False)
        self.hub.last_node_id = None
        return run, success

    def _inputs(self, run: _Run, node_id: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in run.item.prompt[node_id].get("inputs", {}).items():
            if isinstance(value, list) and len(value) == 2 and value[0] in run.item.prompt:
                source = run.results.get(value[0])
                if source is None:
                    entry = self.cache.get(value[0])
                    source = entry.outputs if entry is not None else ()
                values[name] = source[value[1]]
            else:
                values[name] = value
        return values

    async def _run_node(
        self, run: _Run, node_id: str, inject_failure: bool
    ) -> BaseException | None:
        prompt_id = run.item.prompt_id
        class_type = run.item.prompt[node_id]["class_type"]
        entry = self.cache.get(node_id)
        if entry is not None:
            if run.client_id is not None and entry.ui is not None:
                self.hub.send_sync(
                    "executed", self._executed(node_id, entry.ui, prompt_id), run.client_id
                )
            run.results[node_id] = entry.outputs
            run.registry.finish(node_id)
            return None
        run.registry.start(node_id)
        inputs = self._inputs(run, node_id)
        if run.client_id is not None:
            self.hub.last_node_id = node_id
            self.hub.send_sync(
                "executing",
                {"node": node_id, "display_node": node_id, "prompt_id": prompt_id},
                run.client_id,
            )
        context = nodes.NodeContext(
            node_id=node_id,
            prompt=run.item.prompt,
            extra_data=run.item.extra_data,
            dirs=self.dirs,
            config=self.config,
            hub=self.hub,
            registry=run.registry,
            client_id=run.client_id,
            interrupted=lambda: self._interrupt,
            rng=self.rng,
            state=self.objects.state(node_id, class_type),
        )
        try:
            context.check_interrupt()
            if inject_failure:
                raise RuntimeError("simulated failure (failure_rate)")
            if self.faults.out_of_memory_until_free:
                raise nodes.OutOfMemoryError(nodes.OUT_OF_MEMORY_MESSAGE)
            result = await nodes.NODES[class_type](context, inputs)
        except nodes.Interrupted as exc:
            return exc
        except Exception as exc:
            exc.current_inputs = {  # type: ignore[attr-defined]
                name: [_format_value(value)]
                for name, value in inputs.items()
                if name not in _HIDDEN
            }
            return exc
        ui = None
        if result.ui:
            ui = {
                "meta": {
                    "node_id": node_id,
                    "display_node": node_id,
                    "parent_node": None,
                    "real_node_id": node_id,
                },
                "output": result.ui,
            }
            if run.client_id is not None:
                self.hub.send_sync(
                    "executed", self._executed(node_id, ui, prompt_id), run.client_id
                )
        self.cache.set(node_id, CacheEntry(result.outputs, ui))
        run.results[node_id] = result.outputs
        run.registry.finish(node_id)
        run.executed.append(node_id)
        return None

    @staticmethod
    def _executed(node_id: str, ui: dict[str, Any], prompt_id: str) -> dict[str, Any]:
        return {
            "node": node_id,
            "display_node": node_id,
            "output": ui["output"],
            "prompt_id": prompt_id,
        }

    def _report_failure(self, run: _Run, node_id: str, error: BaseException) -> None:
        base = {
            "prompt_id": run.item.prompt_id,
            "node_id": node_id,
            "node_type": run.item.prompt[node_id]["class_type"],
            "executed": list(run.executed),
        }
        if isinstance(error, nodes.Interrupted):
            # Broadcast: without a client_id every socket hears of it.
            self._add_message(run, "execution_interrupted", base, broadcast=True)
            return
        details = {
            **base,
            "exception_message": f"{error}\n",
            "exception_type": _type_name(error),
            "traceback": traceback.format_tb(error.__traceback__),
            "current_inputs": getattr(error, "current_inputs", {}),
            "current_outputs": list(run.item.prompt),
        }
        self._add_message(run, "execution_error", details, broadcast=False)


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, int | float | bool | str):
        return value
    if isinstance(value, list) and value and hasattr(value[0], "getpixel"):
        return tensor_repr(value)
    return str(value)
