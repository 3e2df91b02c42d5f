"""Keeping the API responsive while hundreds of node slots are followed on the same loop.

Following batches (status polls, frame archives, their transactions) is most of the event
loop's work on a large farm, and a saturated loop makes every API request wait its turn: a
status read that costs 5 ms took over a second at 100 nodes. The pacer measures how late the
loop wakes a sleeping task (its lag) and stretches the poll interval of every batch while the
lag is above target, then eases back: node traffic gives way, the API keeps its latency.
Frames are collected a little later under load, never lost.
"""

from __future__ import annotations

import asyncio

TARGET_LAG = 0.02  # seconds; a status answer should not wait longer than this for the loop
PROBE_EVERY = 0.05
MAX_SLOWDOWN = 10.0  # polls at most 10x apart (3 s at the default 0.3 s)


def adjust(slowdown: float, lag: float, target: float = TARGET_LAG) -> float:
    """Next slowdown factor of the poll interval: up 25 % while the loop lags, down 10 % when
    it does not (multiplicative both ways, so it settles where the load fits)."""
    if lag > target:
        return min(MAX_SLOWDOWN, slowdown * 1.25)
    return max(1.0, slowdown * 0.9)


class Pacer:
    def __init__(self) -> None:
        self.slowdown = 1.0
        self.lag = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(PROBE_EVERY)
            self.lag = max(0.0, loop.time() - before - PROBE_EVERY)
            self.slowdown = adjust(self.slowdown, self.lag)
