"""One Blender process over some frames of a batch: start it in its own process group, read
its output line by line into the batch state, watch for stalls, and always kill and reap it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from farm_common.protocol import FrameState, parse_frame_name
from render_node.batch import RENDERING, Batch, Watchdog
from render_node.blender import (
    ErrorLine,
    FrameStarted,
    ImageFormat,
    MissingFile,
    OutputParser,
    SampleProgress,
    Saved,
    output_file,
    parse_version,
)
from render_node.processes import killpg_quietly, write_pid_file
from render_node.sandbox import Sandbox

log = logging.getLogger(__name__)

KILL_GRACE = 1.5  # SIGTERM, then SIGKILL after this many seconds: gone well within 2 s
# Some filesystems keep coarse mtimes; a fresh, emptied output folder is the real guarantee.
MTIME_SLACK = 0.05
MAX_WARNINGS = 100  # missing files a job lists; the rest only in its log


# What Blender's environment may hold: the system's basics, the locale, and GPU drivers' and
# colour management's settings. Never the node's token or another secret: everything else is
# dropped, and the node's own FARM_* variables always are (--blender-env adds names).
BLENDER_ENV_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH", "OCIO"}
)
BLENDER_ENV_PREFIXES = (
    "LC_", "CUDA_", "NVIDIA_", "HIP_", "ROCR_", "HSA_", "GPU_", "SYCL_", "ONEAPI_", "ZE_",
    "__GL", "__EGL", "MESA_", "LIBGL_",
)  # fmt: skip


# Blender's user resources (startup.blend, preferences, add-ons, user scripts): a fresh,
# empty folder per job, so nothing a user or an earlier job put there ever runs.
_USER_DIRS = {
    "BLENDER_USER_RESOURCES": "",
    "BLENDER_USER_CONFIG": "config",
    "BLENDER_USER_SCRIPTS": "scripts",
    "BLENDER_USER_DATAFILES": "datafiles",
}


def blender_env(environ: Mapping[str, str], extra: Sequence[str] = ()) -> dict[str, str]:
    """The allowed part of the node's environment: the basics plus the names (or `*`
    patterns) of `extra`, never FARM_*."""

    def allowed(name: str) -> bool:
        if name.startswith("FARM_"):
            return False
        if name in BLENDER_ENV_NAMES or name.startswith(BLENDER_ENV_PREFIXES):
            return True
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in extra)

    return {k: v for k, v in environ.items() if allowed(k)}


def job_env(base: Mapping[str, str], user_dir: Path) -> dict[str, str]:
    """`base` with Blender's user folders (and temp files) pointed into the job's own folder.

    HOME stays: GPU drivers keep their compiled-kernel caches there.
    """
    env = dict(base)
    for name, sub in _USER_DIRS.items():
        env[name] = str(user_dir / sub) if sub else str(user_dir)
    env["TMPDIR"] = str(user_dir / "tmp")
    return env


def verify_output(path: Path, since: float) -> str | None:
    """None when `path` is a non-empty file written at or after `since`; else what is wrong."""
    try:
        st = path.stat()
    except OSError:
        return f"Blender reported the frame saved but there is no file at {path.name}"
    if st.st_size == 0:
        return f"Blender wrote an empty file {path.name}"
    if st.st_mtime < since:
        return f"{path.name} is older than this render (not written by it)"
    return None


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "Blender was stopped"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"Blender died of {name}"
    return f"Blender exited with code {returncode}"


@dataclass
class RunResult:
    returncode: int | None
    timed_out: bool = False
    cancelled: bool = False


@dataclass
class BlenderRun:
    """Runs `command` for `frames` (a subset of `batch`) and records what happens in `batch`."""

    command: list[str]
    batch: Batch
    frames: list[int]
    output_dir: Path
    fmt: ImageFormat
    _: KW_ONLY
    env: Mapping[str, str]
    log_tail: deque[str]
    frame_timeout: float | None = None
    memory_limit_mb: int | None = None
    sandbox: Sandbox = field(default_factory=lambda: Sandbox("none"))
    pid_file: Path | None = None
    clock: Callable[[], float] = time.monotonic
    tick: float = 0.1
    label: str = ""
    # Missing files: failures of the frames they touch unless allowed, warnings either way.
    allow_missing: bool = False
    warnings: list[str] = field(default_factory=list)
    files: dict[int, Path] = field(default_factory=dict, init=False)
    parser: OutputParser = field(default_factory=OutputParser, init=False)
    proc: asyncio.subprocess.Process | None = field(default=None, init=False)
    cancelled: bool = field(default=False, init=False)
    timed_out: bool = field(default=False, init=False)
    _since: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.env = dict(self.env)  # a copy: the caller's mapping may change under the run

    async def run(self) -> RunResult:
        self._since = time.time() - MTIME_SLACK
        watchdog = Watchdog(self.frame_timeout, self.clock())
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                preexec_fn=self.sandbox.preexec(
                    None if self.memory_limit_mb is None else self.memory_limit_mb << 20
                ),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            message = (
                f"cannot start Blender ({self.command[0]}): {getattr(exc, 'strerror', None) or exc}"
            )
            log.error("%s %s", self.label, message)
            self._line(f"[node] {message}")
            self._settle(None, message)
            return RunResult(None)
        self.proc = proc
        self._write_pid(proc.pid)
        log.info("%s blender pid %d frames %s", self.label, proc.pid, self.frames)
        try:
            await self._supervise(proc, watchdog)
        finally:
            if proc.returncode is None:  # cancelled from outside, or an error: never leave it
                await asyncio.shield(self._kill(proc))
            self._remove_pid()
        returncode = self.sandbox.returncode(proc.returncode)
        self._settle(returncode)
        return RunResult(returncode, timed_out=self.timed_out, cancelled=self.cancelled)

    async def cancel(self) -> None:
        """SIGTERM the process group, SIGKILL after KILL_GRACE; returns once it is reaped."""
        self.cancelled = True
        if self.proc is not None and self.proc.returncode is None:
            await self._kill(self.proc)

    async def _supervise(self, proc: asyncio.subprocess.Process, watchdog: Watchdog) -> None:
        assert proc.stdout is not None
        reader = asyncio.create_task(self._pump(proc.stdout, watchdog))
        waiter = asyncio.create_task(proc.wait())
        swept = False
        try:
            while not (reader.done() and waiter.done()):
                pending = {t for t in (reader, waiter) if not t.done()}
                await asyncio.wait(pending, timeout=self.tick, return_when=asyncio.FIRST_COMPLETED)
                if waiter.done() and not swept:
                    # Blender is gone; anything it left in its group would hold the pipe open.
                    swept = True
                    killpg_quietly(proc.pid, signal.SIGKILL)
                if not waiter.done() and not self.timed_out and watchdog.expired(self.clock()):
                    self.timed_out = True
                    message = (
                        f"no progress for {self.frame_timeout:g} s (--frame-timeout): "
                        "Blender killed"
                    )
                    log.warning("%s %s", self.label, message)
                    self._line(f"[node] {message}")
                    await self._kill(proc)
        finally:
            for task in (reader, waiter):
                if not task.done():
                    task.cancel()
            await asyncio.gather(reader, waiter, return_exceptions=True)

    async def _pump(self, stream: asyncio.StreamReader, watchdog: Watchdog) -> None:
        buffer = b""
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            watchdog.touch(self.clock())
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                self._line(raw.decode("utf-8", "replace"))
            if len(buffer) > 1 << 20:  # a runaway line: take it as is
                self._line(buffer.decode("utf-8", "replace"))
                buffer = b""
        if buffer:
            self._line(buffer.decode("utf-8", "replace"))

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        self.log_tail.append(line)
        now = self.clock()
        for event in self.parser.feed(line):
            if isinstance(event, FrameStarted):
                self.batch.start(event.frame, now)
            elif isinstance(event, SampleProgress):
                self.batch.sample(event.frame, event.sample, event.total)
            elif isinstance(event, ErrorLine):
                self.batch.error(event.frame, event.message)
            elif isinstance(event, Saved):
                self._saved(event, now)
            elif isinstance(event, MissingFile):
                self._missing(event)

    def _missing(self, event: MissingFile) -> None:
        message = f"missing {event.kind} {event.path}"
        if message not in self.warnings and len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
            log.warning("%s %s", self.label, message)
        if self.allow_missing:
            return
        # Read while loading, it spoils every frame of the run; while rendering, that frame.
        frames = self.frames if event.frame is None else [event.frame]
        why = f"{message}: Blender would render the frame without it"
        for frame in frames:
            self.batch.error(frame, why)

    def _saved(self, event: Saved, now: float) -> None:
        frame = event.frame
        if frame is None:
            named = parse_frame_name(Path(event.path).name)
            frame = named[0] if named else None
        if frame is None or frame not in self.batch.frames:
            return
        path = self._frame_path(frame, event.path)
        if path is None:
            return  # another of the scene's writers (a File Output node), not the frame
        problem = verify_output(path, self._since)
        self.batch.saved(frame, now, problem)
        if self.batch.frames[frame].state == FrameState.DONE:
            self.files[frame] = path
            log.info("%s frame %d done (%s s)", self.label, frame, self.batch.frames[frame].seconds)
        else:
            log.warning("%s frame %d failed: %s", self.label, frame, self.batch.frames[frame].error)

    def _frame_path(self, frame: int, said: str | None) -> Path | None:
        """Where Blender saved `frame`: the path it said if that is in our output folder, the
        expected one if it said none, None if it saved something elsewhere."""
        if not said:
            return output_file(self.output_dir, frame, self.fmt)
        candidate = Path(said)
        with contextlib.suppress(OSError, ValueError):
            if candidate.resolve().is_relative_to(self.output_dir.resolve()):
                return candidate
        return None

    def _settle(self, returncode: int | None, start_error: str | None = None) -> None:
        """Blender is gone: decide every frame of this run it left unfinished."""
        now = self.clock()
        exit_text = describe_exit(returncode)
        started_any = any(self.batch.frames[f].started is not None for f in self.frames)
        for frame in self.frames:
            record = self.batch.frames[frame]
            if record.finished:
                continue
            path = output_file(self.output_dir, frame, self.fmt)
            clean = start_error is None and record.error is None and not self.timed_out
            if clean and verify_output(path, self._since) is None:
                # Saved, but we missed (or could not read) its Saved: line.
                self.batch.done(frame, now)
                self.files[frame] = path
                continue
            if start_error is not None:
                self.batch.fail(frame, start_error, now)
            elif self.cancelled:
                self.batch.fail(frame, "cancelled", now)
            elif self.timed_out and (record.state == RENDERING or not started_any):
                where = "rendering" if record.state == RENDERING else "starting Blender"
                self.batch.fail(
                    frame,
                    f"no progress for {self.frame_timeout:g} s while {where} "
                    f"(frame timeout): killed",
                    now,
                )
            elif self.timed_out:
                continue  # left pending: the job runs Blender again for these
            else:
                when = "while rendering" if record.state == RENDERING else "before rendering"
                base = f"{exit_text} {when} frame {frame}"
                error = record.error or self.parser.last_error
                message = f"{error} ({base})" if error else base
                self.batch.fail(frame, message + self._memory_hint(returncode, error), now)

    def _memory_hint(self, returncode: int | None, error: str | None) -> str:
        """Under a memory limit, a crash or an allocation failure is most likely the limit."""
        if self.memory_limit_mb is None:
            return ""
        crashed = returncode is not None and returncode < 0
        if not crashed and "memory" not in (error or "").lower():
            return ""
        return (
            f"; this node limits Blender to {self.memory_limit_mb} MB (--memory-limit-mb): "
            "raise the limit or render on a node with more memory"
        )

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            killpg_quietly(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_GRACE)
            except TimeoutError:
                killpg_quietly(proc.pid, signal.SIGKILL)
        await proc.wait()
        killpg_quietly(proc.pid, signal.SIGKILL)  # stragglers left in the group

    def _write_pid(self, pid: int) -> None:
        if self.pid_file is not None:
            write_pid_file(self.pid_file, pid, marker=str(self.output_dir))

    def _remove_pid(self) -> None:
        if self.pid_file is not None:
            with contextlib.suppress(OSError):
                self.pid_file.unlink()


async def read_blender_version(
    command: Sequence[str], env: Mapping[str, str], *, limit: float
) -> str | None:
    """What `command` (`blender --version`, or bpy printing its version) says, as "5.0.1"."""
    blender = command[0]
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            env=dict(env),
        )
    except OSError as exc:
        log.error("cannot run %s for its version: %s", blender, exc)
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        log.error("%s did not say its version within %g s", blender, limit)
        return None
    finally:
        if proc.returncode is None:
            killpg_quietly(proc.pid, signal.SIGKILL)
            await proc.wait()
    return parse_version(out.decode("utf-8", "replace"))
