"""The node's job queue: jobs wait for one of `slots`, run Blender (again after a frame timeout,
for the frames left), and end completed, failed or cancelled. Owned by the app's lifespan.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import secrets
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from farm_common.manifest import Manifest
from farm_common.protocol import FINAL_JOB_STATES, FrameState, JobState
from farm_common.tiles import Border
from render_node.batch import Batch
from render_node.blender import ImageFormat, build_command, frames_for_one_command
from render_node.devices import describe
from render_node.engine import Engine, parse_engine
from render_node.processes import kill_leftovers
from render_node.runner import BlenderRun, blender_env, job_env, read_blender_version
from render_node.sandbox import Sandbox, private_folder
from render_node.scene_checks import (
    FREESTYLE_CHECK,
    FREESTYLE_EXIT_CODE,
    asset_check,
    path_map_expr,
    scene_guard,
)
from render_node.slots import Slot, SlotPool
from render_node.warm import WarmRun, WorkerSpec

log = logging.getLogger(__name__)

FINAL = FINAL_JOB_STATES


@dataclass
class Job:
    id: str
    scene: str  # as the client named it
    scene_path: Path
    fmt: ImageFormat
    dir: Path
    batch: Batch
    log_tail: deque[str]
    created: float
    set_format: bool = True  # -F fmt; else the scene's own output settings, which are fmt
    allow_missing: bool = False
    # A packed shot: its tree is laid out from the file store under dir/tree before Blender.
    manifest: Manifest | None = None
    lay_out: Callable[[Manifest, Path], Path] | None = None
    warnings: list[str] = field(default_factory=list)
    blender_version: str | None = None
    # The orchestrator's job this batch is of: its next batches find the scene loaded (bpy).
    session: str | None = None
    warm: bool = False  # rendered on a worker that had the scene loaded already
    device: str | None = None  # what its slot renders on ("CPU", "CUDA: ...")
    border: Border | None = None  # one region of each frame (a tile), else whole frames
    samples: tuple[int, int, int] | None = None  # (start, count, total): a sample split's part
    # Instead of rendering: frame -> the image (in the file store, named by its sha256) each
    # frame is developed from (blender.DEVELOP_ONE).
    develop: dict[int, Path] | None = None
    state: JobState = JobState.QUEUED
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    files: dict[int, Path] = field(default_factory=dict)
    run: BlenderRun | WarmRun | None = None
    task: asyncio.Task[None] | None = None
    launched: float | None = None  # monotonic, when the first Blender of the job was started
    # Why this node will not render the scene at all (Freestyle without --allow-freestyle): an
    # orchestrator sends the job's other batches elsewhere instead of trying them here.
    refused: str | None = None
    # Set and replaced whenever `version()` may have changed: long polls wait on it.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self) -> None:
        """Wake every long poll of this job (its state changed or a frame ended)."""
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def wait_for_change(self, since: str) -> None:
        """Return once `version()` differs from `since` or the job has ended (the caller
        bounds the wait with `asyncio.timeout`)."""
        while self.version() == since and self.state not in FINAL:
            await self.changed.wait()

    @property
    def output_dir(self) -> Path:
        return self.dir / "out"

    @property
    def passes_dir(self) -> Path:
        """Where the scene guard sends the scene's File Output nodes and caches."""
        return self.dir / "passes"

    def frame_file(self, frame: int) -> Path | None:
        record = self.batch.frames.get(frame)
        if record is None or record.state != FrameState.DONE:
            return None
        # A frame is served as soon as it is verified, while Blender goes on with the next one.
        if frame not in self.files and self.run is not None:
            return self.run.files.get(frame)
        return self.files.get(frame)

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "scene": self.scene,
            "format": self.fmt.name,
            "counts": {"total": len(self.batch.order), **self.batch.counts()},
            "progress": self.batch.progress(),
            "created": self.created,
        }
        for key in ("error", "started", "finished", "refused", "device"):
            value = getattr(self, key)
            if value is not None:
                result[key] = value
        if self.warnings:
            result["warnings"] = self.warnings
        return result

    def detail(self) -> dict[str, Any]:
        frames = []
        for f in self.batch.order:
            record = self.batch.frames[f]
            item: dict[str, Any] = {"frame": f, "state": record.state}
            if record.seconds is not None:
                item["seconds"] = record.seconds
            if record.error is not None and record.state == FrameState.FAILED:
                item["error"] = record.error
            frames.append(item)
        return {
            **self.summary(),
            "frames": frames,
            "blender_version": self.blender_version,
            "startup_seconds": self.startup_seconds(),
            "warm": self.warm,
            "version": self.version(),
        }

    def version(self) -> str:
        """Changes whenever the job's state changes or one of its frames ends."""
        counts = self.batch.counts()
        return f"{self.state}/{counts[FrameState.DONE]}/{counts[FrameState.FAILED]}"

    def startup_seconds(self) -> float | None:
        """Blender's start-up for this job: from launching it to its first frame starting."""
        starts = [r.started for r in self.batch.frames.values() if r.started is not None]
        if self.launched is None or not starts:
            return None
        return round(max(0.0, min(starts) - self.launched), 3)


@dataclass(frozen=True)
class BlenderOptions:
    """How this node runs each Blender: the same for every job."""

    threads: int = 0  # 0: all cores
    frame_timeout: float | None = None  # killed after this long without a line of output
    allow_freestyle: bool = False  # Freestyle runs Python from the .blend: refused unless set
    memory_limit_mb: int | None = None  # RLIMIT_AS of each Blender
    sandbox: Sandbox = field(default_factory=lambda: Sandbox("none"))  # what holds Blender
    env_names: tuple[str, ...] = ()  # of the node's environment, passed to Blender besides
    log_lines: int = 2000  # of Blender's output kept per job
    version_timeout: float = 20.0  # for `blender --version`
    path_map: tuple[tuple[str, str], ...] = ()  # shared storage mounted elsewhere here
    warm_seconds: float = 120.0  # a warm worker idle this long is stopped (bpy engine)


class JobManager:
    def __init__(
        self,
        *,
        data_dir: Path,
        blender: str,
        slots: int,
        environ: Mapping[str, str],
        devices: list[dict[str, Any] | None] | None = None,
        options: BlenderOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_finished: Callable[[Job], None] | None = None,
    ) -> None:
        self.jobs_dir = data_dir / "jobs"
        self.workers_dir = data_dir / "workers"
        self.engine: Engine = parse_engine(blender)
        self.blender = self.engine.path
        self.options = options or BlenderOptions()
        self.env = blender_env(environ, self.options.env_names)
        self.clock, self.wall, self.on_finished = clock, wall, on_finished
        self.jobs: dict[str, Job] = {}
        self.devices: list[dict[str, Any] | None] = (
            list(devices) if devices is not None else [None] * slots
        )
        self.pool = SlotPool.of(self.devices, clock)
        self._reaper: asyncio.Task[None] | None = None
        self._version: str | None = None
        self._version_lock = asyncio.Lock()
        self._lock: IO[str] | None = None

    async def start(self) -> None:
        """Kill any Blender an earlier run of this node left behind, then clear its jobs."""
        # Two nodes on one data dir would kill each other's Blender and delete its frames.
        self._lock = lock_data_dir(self.jobs_dir.parent)
        pid_files = sorted(self.jobs_dir.glob("*/blender.pid"))
        killed = kill_leftovers(pid_files)
        if killed:
            log.warning("killed %d leftover Blender group(s) at start: %s", len(killed), killed)
        await asyncio.to_thread(shutil.rmtree, self.jobs_dir, True)
        await asyncio.to_thread(shutil.rmtree, self.workers_dir, True)
        private_folder(self.jobs_dir)
        private_folder(self.workers_dir)
        if self.engine.warm:
            self._reaper = asyncio.create_task(self._stop_idle_workers(), name="warm-reaper")

    async def shutdown(self) -> None:
        """Cancel every job; returns when every Blender group is killed and reaped."""
        active = [job for job in self.jobs.values() if job.state not in FINAL]
        await asyncio.gather(*(self.cancel(job) for job in active), return_exceptions=True)
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        workers = [slot.worker for slot in self.pool.slots if slot.worker is not None]
        await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def needed_files(self) -> set[str]:
        """The files of packed shots that queued and running jobs render from."""
        needed: set[str] = set()
        for job in self.jobs.values():
            if job.state in FINAL:
                continue
            if job.manifest is not None:
                needed.update(job.manifest.files.values())
            if job.develop is not None:
                needed.update(path.name for path in job.develop.values())
        return needed

    @property
    def busy(self) -> int:
        return sum(1 for job in self.jobs.values() if job.state == JobState.RUNNING)

    @property
    def slot_count(self) -> int:
        return len(self.pool.slots)

    def warm_sessions(self) -> list[str]:
        """The orchestrator jobs whose scene a slot holds loaded."""
        return sorted({key[0] for key in self.pool.warm_keys() if isinstance(key, tuple)})

    async def blender_version(self) -> str | None:
        """`blender --version` (bpy: its version string), cached once it answered."""
        async with self._version_lock:
            if self._version is None:
                self._version = await read_blender_version(
                    self.engine.version_command(), self.env, limit=self.options.version_timeout
                )
            return self._version

    async def _stop_idle_workers(self) -> None:
        """Warm workers idle for `warm_seconds` give their memory back."""
        while True:
            await asyncio.sleep(min(5.0, self.options.warm_seconds / 2))
            for slot in self.pool.take_idle(self.options.warm_seconds):
                try:
                    if slot.worker is not None:
                        log.info("slot %d: warm worker idle for long, stopped", slot.index)
                        await slot.worker.kill()
                        await asyncio.to_thread(shutil.rmtree, slot.worker.folder, True)
                        slot.worker = None
                finally:
                    await self.pool.release(slot)

    def submit(
        self,
        scene: str,
        scene_path: Path,
        frames: list[int],
        fmt: ImageFormat,
        *,
        set_format: bool = True,
        allow_missing: bool = False,
        manifest: Manifest | None = None,
        lay_out: Callable[[Manifest, Path], Path] | None = None,
        refused: str | None = None,
        session: str | None = None,
        border: Border | None = None,
        samples: tuple[int, int, int] | None = None,
        develop: dict[int, Path] | None = None,
    ) -> Job:
        """Queue a job. With a manifest, `scene_path` is the stored main file (read for its
        format) and Blender renders the tree `lay_out` makes under the job's folder. With a
        `border`, each frame's image is that region of it alone (a tile); with `samples`
        (start, count, total), each frame is those Cycles samples alone, in float OpenEXR;
        with `develop` (frame -> image), each frame is its image saved as the scene saves a
        render, and nothing is rendered."""
        job_id = secrets.token_hex(8)
        batch = Batch(frames)
        job = Job(
            id=job_id,
            scene=scene,
            scene_path=scene_path,
            fmt=fmt,
            dir=self.jobs_dir / job_id,
            batch=batch,
            log_tail=deque(maxlen=self.options.log_lines),
            created=self.wall(),
            blender_version=self._version,
            set_format=set_format,
            allow_missing=allow_missing,
            manifest=manifest,
            lay_out=lay_out,
            refused=refused,
            session=session,
            border=border,
            samples=samples,
            develop=develop,
        )
        batch.on_end = job.touch
        self.jobs[job_id] = job
        job.task = asyncio.create_task(self._execute(job), name=f"job-{job_id}")
        log.info("job %s queued: %s frames %d..%d", job_id, scene, frames[0], frames[-1])
        return job

    async def cancel(self, job: Job) -> None:
        """Stop a queued or running job; returns once its Blender is gone."""
        if job.state in FINAL or job.task is None:
            return
        job.task.cancel()
        await asyncio.wait({job.task})

    async def remove(self, job: Job) -> None:
        """Forget a finished job and delete its files."""
        self.jobs.pop(job.id, None)
        await asyncio.to_thread(shutil.rmtree, job.dir, True)
        log.info("job %s removed", job.id)

    async def _execute(self, job: Job) -> None:
        try:
            slot = await self.pool.acquire(self._warm_key(job))
            try:
                job.state = JobState.RUNNING
                job.started = self.wall()
                job.device = describe(slot.device)
                job.touch()
                job.blender_version = await self.blender_version()
                log.info("job %s running on slot %d", job.id, slot.index)
                await self._render(job, slot)
            finally:
                await self.pool.release(slot)
        except asyncio.CancelledError:
            self._finish(job, cancelled=True)
            raise
        except Exception as exc:  # a bug, but the job must still end with a reason
            log.exception("job %s: node error", job.id)
            for frame in job.batch.unfinished():
                job.batch.fail(frame, f"render node error: {exc}", self.clock())
            self._finish(job)
        else:
            self._finish(job)

    def _warm_key(self, job: Job) -> tuple[Any, ...] | None:
        """What a warm worker must hold to render `job`: the same orchestrator job, scene
        file and settings. None: nothing is kept (the binary engine; a job of no session)."""
        if not self.engine.warm or job.session is None:
            return None
        try:
            st = job.scene_path.stat()
        except OSError:
            return None
        files = tuple(sorted(job.manifest.files.items())) if job.manifest is not None else ()
        scene = (str(job.scene_path), st.st_size, st.st_mtime_ns, st.st_ino, files)
        return (job.session, scene, job.fmt.name, job.set_format, job.allow_missing)

    async def _render(self, job: Job, slot: Slot) -> None:
        """Run Blender until every frame is decided: one process normally; another for the
        frames after a timed-out one; several when a frame list is too long for one command.
        """
        if job.refused is not None:  # known before Blender ran (a scene too new for it)
            now = self.clock()
            for frame in job.batch.unfinished():
                job.batch.fail(frame, job.refused, now)
            return
        if self.engine.warm:
            await self._render_warm(job, slot)
            return
        sandbox = self.options.sandbox
        user_dir = job.dir / "blender-user"
        # Blender's only writable places: its frames, its user folders, and where the scene
        # guard sends File Output nodes and caches (never the job folder itself: the pid file).
        writable = [job.output_dir, user_dir, user_dir / "tmp", job.passes_dir]
        await asyncio.to_thread(_make_folders, writable, sandbox)
        scene_path = job.scene_path
        if job.manifest is not None and job.lay_out is not None:
            scene_path = await asyncio.to_thread(job.lay_out, job.manifest, job.dir / "tree")
            job.log_tail.append(
                f"[node] {len(job.manifest.files)} files of the shot laid out in {job.dir / 'tree'}"
            )
        env = sandbox.environment(job_env(self.env, user_dir))
        remaining = job.batch.unfinished()
        while remaining:
            part = frames_for_one_command(remaining)
            command = sandbox.command(
                build_command(
                    self.blender,
                    scene_path,
                    job.output_dir,
                    part,
                    job.fmt,
                    self.options.threads,
                    allow_freestyle=self.options.allow_freestyle,
                    guard_dir=job.passes_dir,
                    set_format=job.set_format,
                    allow_missing=job.allow_missing,
                    path_map=self.options.path_map,
                    device=slot.device,
                    border=job.border,
                    samples=job.samples,
                    develop=job.develop,
                ),
                read=[
                    job.dir / "tree" if job.manifest is not None else scene_path,
                    *(job.develop or {}).values(),
                ],
                write=[job.output_dir, user_dir, job.passes_dir],
            )
            job.log_tail.append("[node] " + " ".join(_shown(command)))
            if job.launched is None:
                job.launched = self.clock()
            job.run = BlenderRun(
                command,
                job.batch,
                part,
                job.output_dir,
                job.fmt,
                env=env,
                log_tail=job.log_tail,
                frame_timeout=self.options.frame_timeout,
                memory_limit_mb=self.options.memory_limit_mb,
                sandbox=sandbox,
                pid_file=job.dir / "blender.pid",
                clock=self.clock,
                label=f"job {job.id}",
                allow_missing=job.allow_missing,
                warnings=job.warnings,
            )
            try:
                result = await job.run.run()
            finally:
                job.files.update(job.run.files)
            if result.returncode == FREESTYLE_EXIT_CODE and not self.options.allow_freestyle:
                # Our own check ended Blender (blender.FREESTYLE_CHECK): so will every batch.
                failed = [job.batch.frames[f] for f in part if job.batch.frames[f].error]
                job.refused = failed[0].error if failed else "the scene enables Freestyle"
                break
            left = job.batch.unfinished()
            if len(left) >= len(remaining):  # nothing decided: never loop on it
                break
            remaining = left

    async def _render_warm(self, job: Job, slot: Slot) -> None:
        """The bpy engine: frames one by one on the slot's worker, warm for the job's next
        batch (render_node/warm.py)."""
        await asyncio.to_thread(job.output_dir.mkdir, parents=True, exist_ok=True)
        folder = (self.workers_dir / f"slot-{slot.index}").absolute()
        sandbox = self.options.sandbox
        checks = [] if self.options.allow_freestyle else [FREESTYLE_CHECK]
        if self.options.path_map:
            checks.append(path_map_expr(self.options.path_map))
        checks += [asset_check(job.allow_missing), scene_guard(folder / "passes")]

        async def prepare(folder: Path) -> tuple[Path, list[Path]]:
            if job.manifest is not None and job.lay_out is not None:
                tree = folder / "tree"
                scene = await asyncio.to_thread(job.lay_out, job.manifest, tree)
                job.log_tail.append(
                    f"[node] {len(job.manifest.files)} files of the shot laid out in {tree}"
                )
                return scene, [tree]
            return job.scene_path, [job.scene_path]

        spec = WorkerSpec(
            python=self.engine.path,
            key=self._warm_key(job),
            folder=folder,
            env=sandbox.environment(job_env(self.env, folder / "user")),
            sandbox=sandbox,
            memory_limit_mb=self.options.memory_limit_mb,
            prepare=prepare,
            open_request={
                "checks": checks,
                "format": job.fmt.name if job.set_format else None,
                "threads": self.options.threads,
                "device": slot.device,
            },
            stall=self.options.frame_timeout,
        )
        job.run = run = WarmRun(
            spec,
            slot,
            job.batch,
            job.batch.unfinished(),
            job.output_dir,
            job.log_tail,
            label=f"job {job.id}",
            allow_missing=job.allow_missing,
            warnings=job.warnings,
            clock=self.clock,
            border=job.border,
            samples=job.samples,
            develop=job.develop,
        )
        try:
            await run.run()
        finally:
            job.files.update(run.files)
            job.launched = run.launched
            job.warm = run.warm
            if run.refused is not None and not self.options.allow_freestyle:
                job.refused = run.refused

    def _finish(self, job: Job, *, cancelled: bool = False) -> None:
        now = self.clock()
        for frame in job.batch.unfinished():
            job.batch.fail(frame, "cancelled" if cancelled else "not rendered", now)
        job.run = None
        job.finished = self.wall()
        failed = [r for r in job.batch.frames.values() if r.state == FrameState.FAILED]
        if cancelled:
            job.state, job.error = JobState.CANCELLED, "cancelled"
        elif failed:
            first = failed[0]
            job.state = JobState.FAILED
            job.error = (
                f"{len(failed)} of {len(job.batch.order)} frames failed; "
                f"frame {first.frame}: {first.error}"
            )
        else:
            job.state = JobState.COMPLETED
        log.info("job %s %s%s", job.id, job.state, f": {job.error}" if job.error else "")
        job.touch()
        if self.on_finished is not None:
            self.on_finished(job)


def _shown(command: list[str]) -> list[str]:
    """The command for the job's log, our `--python-expr` checks named, not printed whole."""
    return [
        "<farm scene checks>" if i and command[i - 1] == "--python-expr" else arg
        for i, arg in enumerate(command)
    ]


def _make_folders(folders: list[Path], sandbox: Sandbox) -> None:
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    sandbox.prepare(folders)


class DataDirInUse(RuntimeError):
    pass


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold an exclusive lock on `data_dir` for as long as the returned file stays open."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "node.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DataDirInUse(
            f"another render node is using {data_dir}: give each node its own --data-dir"
        ) from None
    return handle
