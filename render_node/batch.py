"""Per-frame state of a batch (pending -> rendering -> done | failed) and progress; pure.

The runner feeds it what Blender says and what it found on disk; this module decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from farm_common.protocol import FrameState

PENDING, RENDERING, DONE, FAILED = (
    FrameState.PENDING,
    FrameState.RENDERING,
    FrameState.DONE,
    FrameState.FAILED,
)


@dataclass
class FrameRecord:
    frame: int
    state: FrameState = PENDING
    started: float | None = None  # monotonic
    seconds: float | None = None
    error: str | None = None
    fraction: float = 0.0  # sample hint within the frame

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED)


class Batch:
    def __init__(self, frames: list[int], on_end: Callable[[], None] | None = None) -> None:
        self.order = list(frames)
        self.frames = {f: FrameRecord(f) for f in frames}
        # Called whenever a frame ends (done or failed): what a long poll waits for.
        self.on_end = on_end

    def get(self, frame: int | None) -> FrameRecord | None:
        return self.frames.get(frame) if frame is not None else None

    def unfinished(self) -> list[int]:
        return [f for f in self.order if not self.frames[f].finished]

    def start(self, frame: int, now: float) -> None:
        """Blender began `frame`; a frame it left without saving has failed."""
        for record in self.frames.values():
            if record.state == RENDERING and record.frame != frame:
                self.fail(
                    record.frame,
                    record.error or f"Blender moved on to frame {frame} without saving it",
                    now,
                )
        current = self.frames.get(frame)
        if current is not None and current.state == PENDING:
            current.state = RENDERING
            current.started = now

    def sample(self, frame: int, done: int, total: int) -> None:
        record = self.frames.get(frame)
        if record is not None and record.state == RENDERING and total > 0:
            # Adaptive sampling can stop early or change the total: a hint, never 100 %.
            record.fraction = max(record.fraction, min(done / total, 0.99))

    def error(self, frame: int | None, message: str) -> None:
        record = self.get(frame)
        if record is not None and not record.finished and record.error is None:
            record.error = message

    def saved(self, frame: int, now: float, problem: str | None) -> None:
        """Blender said it saved `frame`; `problem` is what the file check found (None: ok)."""
        record = self.frames.get(frame)
        if record is None or record.finished:
            return
        if record.error is not None:
            # e.g. "Error: CUDA error" then "Saved:" of a broken frame: do not trust the file.
            self.fail(frame, record.error, now)
        elif problem is not None:
            self.fail(frame, problem, now)
        else:
            self.done(frame, now)

    def done(self, frame: int, now: float) -> None:
        record = self.frames[frame]
        record.state = DONE
        record.fraction = 1.0
        record.error = None
        if record.started is not None:
            record.seconds = round(now - record.started, 3)
        self._ended()

    def fail(self, frame: int, message: str, now: float) -> None:
        record = self.frames[frame]
        record.state = FAILED
        record.error = message
        record.fraction = 0.0
        if record.started is not None:
            record.seconds = round(now - record.started, 3)
        self._ended()

    def _ended(self) -> None:
        if self.on_end is not None:
            self.on_end()

    def counts(self) -> dict[FrameState, int]:
        result = {PENDING: 0, RENDERING: 0, DONE: 0, FAILED: 0}
        for record in self.frames.values():
            result[record.state] += 1
        return result

    def progress(self) -> float:
        """(frames done + sample fraction of frames in flight) / total, in 0..1."""
        if not self.frames:
            return 1.0
        total = 0.0
        for record in self.frames.values():
            if record.state == DONE:
                total += 1.0
            elif record.state == RENDERING:
                total += record.fraction
        return round(min(total / len(self.frames), 1.0), 4)


class Watchdog:
    """'No progress for `timeout` seconds', on an injected clock so tests need not sleep."""

    def __init__(self, timeout: float | None, now: float) -> None:
        self.timeout = timeout
        self.last = now

    def touch(self, now: float) -> None:
        self.last = now

    def expired(self, now: float) -> bool:
        return self.timeout is not None and now - self.last >= self.timeout
