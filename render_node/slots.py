"""The node's render slots: how many jobs run at once, the device each slot renders on, and
(under the bpy engine) the warm worker each slot keeps between jobs.

A job asks for a slot with its warm key (what its worker would hold: its session, scene and
settings). A free slot whose worker holds that key is taken first; then an empty one; then
the one idle longest, whose worker goes. Pure bookkeeping and asyncio, no processes: the
workers themselves are started and killed by the caller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Slot:
    index: int
    device: dict[str, Any] | None = None  # {"type": "CUDA", "ids": [...]}; None: the CPU
    worker: Any = None  # the bpy engine's Worker this slot keeps (None: none, or binary)
    free_since: float = 0.0

    def warm_for(self, key: Hashable) -> bool:
        worker = self.worker
        return worker is not None and worker.alive and key is not None and worker.key == key


@dataclass
class SlotPool:
    slots: list[Slot]
    clock: Callable[[], float] = time.monotonic
    _free: list[Slot] = field(default_factory=list, init=False)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition, init=False)

    def __post_init__(self) -> None:
        self._free = list(self.slots)

    @classmethod
    def of(cls, devices: list[dict[str, Any] | None], clock: Callable[[], float] = time.monotonic
           ) -> SlotPool:  # fmt: skip
        return cls([Slot(i, device) for i, device in enumerate(devices)], clock)

    @property
    def busy(self) -> int:
        return len(self.slots) - len(self._free)

    def choose(self, key: Hashable) -> Slot | None:
        """The free slot a job of warm key `key` takes (None: all busy)."""
        if not self._free:
            return None
        for slot in self._free:
            if slot.warm_for(key):
                return slot
        empty = [s for s in self._free if s.worker is None or not s.worker.alive]
        if empty:
            return empty[0]
        return min(self._free, key=lambda s: s.free_since)

    async def acquire(self, key: Hashable) -> Slot:
        async with self._changed:
            while (slot := self.choose(key)) is None:
                await self._changed.wait()
            self._free.remove(slot)
            return slot

    async def release(self, slot: Slot) -> None:
        slot.free_since = self.clock()
        async with self._changed:
            self._free.append(slot)
            self._changed.notify_all()

    def take_idle(self, older_than: float) -> list[Slot]:
        """Free slots whose worker has been idle `older_than` seconds or more, taken (busy)
        for the caller to stop their workers and `release` them."""
        now = self.clock()
        taken = [s for s in self._free if s.worker is not None and now - s.free_since >= older_than]
        for slot in taken:
            self._free.remove(slot)
        return taken

    def warm_keys(self) -> list[Hashable]:
        return [s.worker.key for s in self.slots if s.worker is not None and s.worker.alive]
