"""The bpy engine's side of a job: render its frames one by one on its slot's worker, which
keeps the scene loaded for the job's next batch (a warm slot).

What the binary engine guarantees holds here: auto-exec off and the node's checks (run by the
worker on the loaded scene), the memory limit and the sandbox (set when the worker starts),
the stall timeout, output verified on disk, cancel kills the worker within 2 s. A crash or a
stall fails only the frame it was on; a fresh worker renders the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farm_common.protocol import FrameState, frame_name
from farm_common.tiles import Border
from render_node.batch import RENDERING, Batch
from render_node.blender import DEVELOP_ONE, ErrorLine, MissingFile, OutputParser, samples_expr
from render_node.runner import MAX_WARNINGS, MTIME_SLACK, describe_exit, verify_output
from render_node.sandbox import Sandbox
from render_node.scene_checks import FREESTYLE_EXIT_CODE
from render_node.slots import Slot
from render_node.worker import Worker, WorkerGone, WorkerStalled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """How to start a worker and what to open in it: the same for every frame of a job."""

    python: str
    key: Hashable  # what the worker holds once open; None: kept for this job only
    folder: Path  # the worker's own folder (made fresh for each worker)
    env: Mapping[str, str]
    sandbox: Sandbox
    memory_limit_mb: int | None
    # Lays out what the worker reads into its folder; returns (scene path, paths to read).
    prepare: Callable[[Path], Awaitable[tuple[Path, list[Path]]]]
    open_request: dict[str, Any]  # bpy_worker's "open", less the scene path
    stall: float | None = None  # --frame-timeout


@dataclass
class WarmRun:
    """Renders `frames` of `batch` on `slot`'s worker (started and opened when not warm)."""

    spec: WorkerSpec
    slot: Slot
    batch: Batch
    frames: list[int]
    output_dir: Path
    log_tail: deque[str]
    label: str = ""
    allow_missing: bool = False
    warnings: list[str] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    border: Border | None = None  # render this region of each frame alone
    samples: tuple[int, int, int] | None = None  # (start, count, total): those samples alone
    develop: dict[int, Path] | None = None  # frame -> image saved as the scene's frame instead
    files: dict[int, Path] = field(default_factory=dict, init=False)
    warm: bool = field(default=False, init=False)  # the first worker was warm already
    launched: float | None = field(default=None, init=False)
    refused: str | None = field(default=None, init=False)
    parser: OutputParser = field(default_factory=OutputParser, init=False)

    async def run(self) -> None:
        """Until every frame of this run is decided."""
        try:
            while left := [f for f in self.frames if not self.batch.frames[f].finished]:
                worker = await self._ready_worker()
                if worker is None:
                    return  # the scene did not open: every frame is decided
                for frame in left:
                    if not await self._render(worker, frame):
                        break  # the worker is gone: a fresh one takes the rest
        except BaseException:
            # Cancelled (or a bug), perhaps with a frame in flight: its worker goes, now.
            worker = self.slot.worker
            if worker is not None:
                await asyncio.shield(self._drop(worker))
            raise
        finally:
            worker = self.slot.worker
            if worker is not None:
                worker.log_tail = None
                if self.spec.key is None:  # nobody may reuse it
                    await asyncio.shield(self._drop(worker))

    async def _ready_worker(self) -> Worker | None:
        """The slot's worker, warm for this job's key or started and opened now."""
        worker = self.slot.worker
        first = self.launched is None
        if first:
            self.launched = self.clock()
        if worker is not None and self.slot.warm_for(self.spec.key):
            self.warm = first
            worker.log_tail = self.log_tail
            self.log_tail.append(f"[node] warm worker (pid {worker.proc.pid}): scene loaded")
            return worker
        if worker is not None:
            await self._drop(worker)
        return await self._start()

    async def _start(self) -> Worker | None:
        spec = self.spec
        folder = spec.folder
        await asyncio.to_thread(shutil.rmtree, folder, True)
        for sub in ("in", "out", "user", "user/tmp", "passes"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        spec.sandbox.prepare([folder / "out", folder / "user", folder / "user" / "tmp",
                              folder / "passes"])  # fmt: skip
        scene, read = await spec.prepare(folder)
        try:
            worker = await Worker.start(
                spec.python, folder, env=spec.env, sandbox=spec.sandbox, read=read,
                memory_limit_mb=spec.memory_limit_mb, clock=self.clock,
            )  # fmt: skip
        except OSError as exc:
            self._fail_all(f"cannot start the bpy worker ({spec.python}): {exc}")
            return None
        worker.log_tail = self.log_tail
        self.slot.worker = worker
        self.log_tail.append(f"[node] bpy worker pid {worker.proc.pid} opens {scene}")
        log.info("%s bpy worker pid %d opens %s", self.label, worker.proc.pid, scene)
        try:
            ready = await worker.next_message(spec.stall)
            if ready.get("event") == "ready":
                worker.version = str(ready.get("version"))
            await worker.send({**spec.open_request, "op": "open", "scene": str(scene)})
            while True:
                message = await worker.next_message(spec.stall)
                event = message.get("event")
                if event == "log":
                    self._log_line(message, None)
                elif event == "opened":
                    worker.key = spec.key
                    return worker
                elif event == "failed":
                    self._open_failed(message)
                    await self._drop(worker)
                    return None
        except WorkerGone as exc:
            why = describe_exit(exc.returncode).replace("Blender", "the bpy worker")
            error = self.parser.last_error
            text = f"{error} ({why} loading the scene)" if error else f"{why} loading the scene"
            self._fail_all(text + self._memory_hint(exc.returncode, error))
        except WorkerStalled:
            self._fail_all(
                f"no progress for {spec.stall:g} s while starting Blender (frame timeout): killed"
            )
        await self._drop(worker)
        return None

    def _open_failed(self, message: dict[str, Any]) -> None:
        error = message.get("error") or self.parser.last_error or "the scene could not be opened"
        if message.get("code") == FREESTYLE_EXIT_CODE:
            self.refused = error
        for frame in self.frames:
            record = self.batch.frames[frame]
            if not record.finished:
                self.batch.fail(frame, record.error or error, self.clock())

    async def _render(self, worker: Worker, frame: int) -> bool:
        """One frame; False when the worker is gone (killed, crashed, stalled)."""
        since = time.time() - MTIME_SLACK
        stem = worker.folder / "out" / frame_name(frame, "")
        try:
            setup = [] if self.samples is None else [samples_expr(*self.samples)]
            request = {"op": "render", "frame": frame, "path": str(stem), "border": self.border,
                       "setup": setup}  # fmt: skip
            if self.develop is not None:
                request["develop"] = {
                    "code": DEVELOP_ONE,
                    "source": str(await self._take_in(worker, frame)),
                }
            await worker.send(request)
            while True:
                message = await worker.next_message(self.spec.stall)
                event = message.get("event")
                now = self.clock()
                if event == "started":
                    self.batch.start(frame, now)
                elif event == "progress":
                    done, total = _int(message.get("sample")), _int(message.get("total"))
                    self.batch.sample(frame, done, total)
                elif event == "log":
                    self._log_line(message, frame)
                elif event == "saved":
                    self._saved(frame, worker, str(message.get("path") or ""), since)
                    return True
                elif event == "failed":
                    record = self.batch.frames[frame]
                    error = message.get("error") or record.error or "the render failed"
                    self.batch.fail(frame, str(error) + self._memory_hint(None, error), now)
                    return True
        except WorkerGone as exc:
            record = self.batch.frames[frame]
            where = "while rendering" if record.state == RENDERING else "before rendering"
            base = describe_exit(exc.returncode).replace("Blender", "the bpy worker")
            error = record.error or self.parser.last_error
            text = f"{error} ({base} {where} frame {frame})" if error else (
                f"{base} {where} frame {frame}")  # fmt: skip
            self.batch.fail(frame, text + self._memory_hint(exc.returncode, error), self.clock())
        except WorkerStalled:
            self.batch.fail(
                frame,
                f"no progress for {self.spec.stall:g} s while rendering (frame timeout): killed",
                self.clock(),
            )
        log.warning("%s worker gone at frame %d: %s", self.label, frame,
                    self.batch.frames[frame].error)  # fmt: skip
        await self._drop(worker)
        return False

    async def _take_in(self, worker: Worker, frame: int) -> Path:
        """The image `frame` is developed from, put where the worker may read it (its `in`
        folder: the file store is not in its sandbox)."""
        assert self.develop is not None
        source = self.develop[frame]
        target = worker.folder / "in" / f"{frame_name(frame, '')}{source.suffix or '.exr'}"
        await asyncio.to_thread(_link_or_copy, source, target)
        return target

    def _saved(self, frame: int, worker: Worker, said: str, since: float) -> None:
        now = self.clock()
        path = Path(said)
        out = worker.folder / "out"
        problem = None
        if not said or path.parent != out:
            problem = f"the frame was saved outside the worker's output folder ({said!r})"
        else:
            problem = verify_output(path, since)
        target = self.output_dir / frame_name(frame, path.suffix)
        if problem is None:
            try:
                os.replace(path, target)
            except OSError as exc:
                problem = f"cannot move the frame into the job's folder: {exc}"
        self.batch.saved(frame, now, problem)
        record = self.batch.frames[frame]
        if record.state == FrameState.DONE:
            self.files[frame] = target
            log.info("%s frame %d done (%s s)", self.label, frame, record.seconds)
        else:
            log.warning("%s frame %d failed: %s", self.label, frame, record.error)

    def _log_line(self, message: dict[str, Any], frame: int | None) -> None:
        line = str(message.get("line") or "")
        for event in self.parser.feed(line):
            if isinstance(event, MissingFile):
                self._missing(event, frame)
            elif isinstance(event, ErrorLine) and frame is not None:
                self.batch.error(frame, event.message)

    def _missing(self, event: MissingFile, frame: int | None) -> None:
        text = f"missing {event.kind} {event.path}"
        if text not in self.warnings and len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(text)
            log.warning("%s %s", self.label, text)
        if self.allow_missing:
            return
        why = f"{text}: Blender would render the frame without it"
        at = event.frame if event.frame is not None else frame
        for f in self.frames if at is None else [at]:
            self.batch.error(f, why)

    def _fail_all(self, message: str) -> None:
        now = self.clock()
        for frame in self.frames:
            record = self.batch.frames[frame]
            if not record.finished:
                self.batch.fail(frame, record.error or message, now)

    def _memory_hint(self, returncode: int | None, error: object) -> str:
        limit = self.spec.memory_limit_mb
        if limit is None:
            return ""
        crashed = returncode is not None and returncode < 0
        if not crashed and "memory" not in str(error or "").lower():
            return ""
        return (
            f"; this node limits Blender to {limit} MB (--memory-limit-mb): "
            "raise the limit or render on a node with more memory"
        )

    async def _drop(self, worker: Worker) -> None:
        await worker.kill()
        if self.slot.worker is worker:
            self.slot.worker = None
        await asyncio.to_thread(shutil.rmtree, worker.folder, True)


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)  # another file system


def _int(value: Any) -> int:
    with contextlib.suppress(TypeError, ValueError):
        return int(value)
    return 0
