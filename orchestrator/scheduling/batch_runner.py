"""Running one batch on one node: push the scene, submit, follow, and on each poll collect the
frames it found done, in one request (the node's frames.tar) and one store transaction.

The attempt races a watcher: when the registry declares the node lost, whatever request the
attempt is stuck in (a download from a frozen machine...) is abandoned at once. What happened is
returned as an `Outcome`; deciding what goes back to the queue is the scheduler's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from farm_common.blendfile import scene_quality, scene_resolution
from farm_common.blobs import BlobStore
from farm_common.frames import compact_frames
from farm_common.images import image_problem
from farm_common.manifest import Manifest
from farm_common.protocol import (
    FINAL_JOB_STATES,
    MAX_MESSAGE_CHARS,
    BatchState,
    FrameState,
    JobCreated,
    JobDetail,
    SampleRange,
    Tile,
    image_format,
)
from farm_common.tiles import grid, sample_range, tile_of, unit, unit_frame, unit_tile
from farm_pack.tree import file_sha256
from orchestrator.metrics import Metrics
from orchestrator.nodes.archive import FrameFiles
from orchestrator.nodes.client import (
    FrameMissing,
    NodeClient,
    NodeError,
    NodeJobGone,
    NodeRejected,
    SceneMissing,
)
from orchestrator.renders import (
    PART_FORMAT,
    output_path,
    output_suffix,
    part_path,
    piece_format,
    tile_format,
    tile_path,
    tiles_dir,
)
from orchestrator.scheduling.decisions import (
    MAX_STATUS_MISSES,
    BatchBook,
    Fetched,
    batch_end,
    held_since,
    next_interval,
    read_poll,
    take_collection,
    take_end,
    take_poll,
)
from orchestrator.scheduling.policy import poll_base
from orchestrator.scheduling.registry import Registry
from orchestrator.settings import OrchestratorSettings
from orchestrator.stitch import StitchError, merge_samples, remove_pieces, stitch_frame
from orchestrator.store.db import Job, QueuedBatch, Store
from orchestrator.store.scenes import is_upload_ref, job_scene_file

log = logging.getLogger(__name__)

DEFAULT_JPEG_QUALITY = 90  # Blender's, for a scene whose own cannot be read
# How long a collection waits at most while batches are on their way to idle slots.
FEED_FIRST_SECONDS = 0.25


@dataclass
class Outcome:
    state: BatchState  # done | failed | lost | cancelled
    answered: bool  # False: the node stopped answering (the worker waits for it)
    errors: dict[int, str] = field(default_factory=dict)  # frames that failed on this node
    collected: set[int] = field(default_factory=set)
    node_job: str | None = None
    refused: str | None = None  # the node renders none of the scene (render_node Job.refused)


class _Look(NamedTuple):
    size: tuple[int, int] | None  # the scene's frames in pixels, if the file says
    attributes: dict[str, Any]  # written with the stitched frame (the JPEG quality)


class BatchRunner:
    def __init__(
        self,
        settings: OrchestratorSettings,
        store: Store,
        registry: Registry,
        client: NodeClient,
        metrics: Metrics,
        is_cancelled: Callable[[str], bool],
        on_status: Callable[[str, QueuedBatch, JobDetail], float | None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.client = client
        self.metrics = metrics
        self.is_cancelled = is_cancelled
        self.on_status = on_status
        self._scene_locks: dict[tuple[str, str], asyncio.Lock] = {}
        # (node, scene sha) the node said it holds: no HEAD before each of its batches. A node
        # that lost it since answers the submit 404 (SceneMissing), and it is pushed again.
        self._scenes_held: set[tuple[str, str]] = set()
        self._files_held: set[tuple[str, str]] = set()  # (node, job) of packed shots
        self._manifests: dict[str, Manifest] = {}
        self._unnamed: set[tuple[str, str]] = set()  # (node, scene name) not in its folder
        self._warned: dict[str, set[str]] = {}  # job -> missing-file warnings stored
        self._looks: dict[str, _Look] = {}  # tiled job -> what its stitched frames must be
        self._finishing: dict[str, asyncio.Lock] = {}  # split job -> its frames put together
        self.files = BlobStore(settings.files_dir, settings.max_upload_mb << 20)
        self._following = 0  # batches whose node job is being polled
        # Batches on their way to an idle slot (taken, not yet on the node): see feed_started.
        self._feeding: set[str] = set()
        self._fed = asyncio.Event()
        self._fed.set()

    def feed_started(self, batch_id: str) -> None:
        """An idle slot waits for this batch: collections wait for it to reach its node (at
        most FEED_FIRST_SECONDS). Collecting can wait, an idle node cannot: at the start of a
        job the first batches go out before the frames of the fastest ones are fetched."""
        self._feeding.add(batch_id)
        self._fed.clear()

    def feed_done(self, batch_id: str) -> None:
        """The batch is on its node, or will never be (idempotent)."""
        self._feeding.discard(batch_id)
        if not self._feeding:
            self._fed.set()

    def base_interval(self) -> float:
        return poll_base(
            self.settings.poll_interval, self._following, self.settings.max_polls_per_second
        )

    async def run(self, url: str, job: Job, batch: QueuedBatch) -> Outcome:
        # What the node is told and tells back are frames: a tiled job's units (one region of
        # several frames a batch, farm_common/tiles.py) are those plus the region's offset.
        offset = unit(0, unit_tile(batch.frames[0]))
        book = BatchBook.of([f - offset for f in batch.frames])
        attempt = asyncio.create_task(self._attempt(url, job, batch, book))
        watcher = asyncio.create_task(self._until_lost(url))
        try:
            await asyncio.wait({attempt, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not attempt.done():
                attempt.cancel()
            await asyncio.gather(attempt, watcher, return_exceptions=True)
        if attempt.cancelled() and self.registry.is_paused(url):
            # An operator paused the node: its frames go back as they were, no attempt counted.
            log.info("job %s batch %s: node %s paused; the batch goes back", job.id, batch.id, url)
            state, answered = BatchState.LOST, True
        elif attempt.cancelled():
            log.warning("job %s batch %s: node %s lost mid-batch", job.id, batch.id, url)
            state, answered = BatchState.LOST, False
        elif attempt.exception() is not None:
            # Whatever broke (an answer no check foresaw, a bug), the batch ends here, on this
            # node: its frames go back to the queue and the node waits until it answers again.
            exc = attempt.exception()
            log.error("job %s batch %s on %s: %r", job.id, batch.id, url, exc, exc_info=exc)
            book.fail_uncollected(f"the orchestrator could not follow the batch on {url}: {exc!r}")
            state, answered = BatchState.FAILED, False
        else:
            state, answered = attempt.result()
        # The store keeps these and the API shows them: a message, not whatever a node said.
        errors = {frame + offset: why[:MAX_MESSAGE_CHARS] for frame, why in book.errors.items()}
        collected = {frame + offset for frame in book.collected}
        return Outcome(state, answered, errors, collected, book.node_job, book.refused)

    async def _ensure_scene(self, url: str, job: Job) -> None:
        key = (url, job.scene_sha)
        if key in self._scenes_held:
            return
        lock = self._scene_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._scenes_held:
                return  # pushed by the node's other slot while this one waited
            if not await self.client.has_scene(url, job.scene_sha):
                path = await self.store.run(self.store.scene_path, job.scene_sha)
                if path is None:
                    raise NodeRejected(f"scene {job.scene_sha} is not on the orchestrator any more")
                log.info("job %s: pushing scene %s to %s", job.id, job.scene_sha[:12], url)
                await self.client.put_scene(url, job.scene_sha, path)
            self._scenes_held.add(key)

    def forget_job(self, job_id: str) -> None:
        """The job is over: drop what was kept of it (its manifest, its files' pushes)."""
        self._manifests.pop(job_id, None)
        self._warned.pop(job_id, None)
        self._looks.pop(job_id, None)
        self._finishing.pop(job_id, None)
        self._files_held = {key for key in self._files_held if key[1] != job_id}
        for key in [key for key in self._scene_locks if key[1] == job_id]:
            del self._scene_locks[key]

    def _manifest(self, job: Job) -> Manifest | None:
        if job.manifest is None:
            return None
        manifest = self._manifests.get(job.id)
        if manifest is None:
            manifest = self._manifests[job.id] = Manifest.model_validate_json(job.manifest)
        return manifest

    async def _ensure_files(self, url: str, job: Job, manifest: Manifest) -> None:
        """Push the files of the job's shot the node lacks (asked in one request)."""
        key = (url, job.id)
        if key in self._files_held:
            return
        async with self._scene_locks.setdefault(key, asyncio.Lock()):
            if key in self._files_held:
                return
            lacking = await self.client.missing_files(url, sorted(manifest.blobs()))
            if lacking:
                log.info("job %s: pushing %d file(s) of the shot to %s", job.id, len(lacking), url)
            for sha in lacking:
                path = self.files.path(sha)
                if not await asyncio.to_thread(path.is_file):
                    raise NodeRejected(f"file {sha[:12]} of the shot is not on the orchestrator")
                await self.client.put_file(url, sha, path)
            self._files_held.add(key)

    async def _ensure(self, url: str, job: Job, manifest: Manifest | None) -> None:
        if manifest is not None:
            await self._ensure_files(url, job, manifest)
        else:
            await self._ensure_scene(url, job)

    async def _submit(self, url: str, job: Job, batch: QueuedBatch) -> JobCreated:
        """Send the batch to the node: its frames, and the region or samples part they are of."""
        frames = compact_frames(unit_frame(f) for f in batch.frames)
        fmt = job.format if job.format_given else None
        piece = unit_tile(batch.frames[0])
        tile = samples = None
        if job.tiles > 1:
            cols, rows = grid(job.tiles)
            col, row = tile_of(cols, rows, piece)
            size = (await self._look_of(job)).size if job.tile_margin else None
            tile = Tile(cols=cols, rows=rows, col=col, row=row, margin=job.tile_margin, size=size)
            if tile_format(job.format) != job.format:
                fmt = tile_format(job.format)
        elif job.sample_parts > 1:
            assert job.samples is not None  # set with sample_parts (api.check_split_samples)
            start, count = sample_range(piece, job.sample_parts, job.samples)
            samples = SampleRange(start=start, count=count, total=job.samples)
            fmt = PART_FORMAT
        return await self._send(url, job, frames, fmt, tile=tile, samples=samples)

    async def _send(
        self, url: str, job: Job, frames: str, fmt: str | None, **what: Any
    ) -> JobCreated:
        """Submit `frames` of the job's scene to the node (`what`: the submit's other fields),
        pushing the scene (or the shot's files) first if it does not hold them."""
        manifest = self._manifest(job)
        allow = bool(job.allow_missing)
        if (
            manifest is None
            and not is_upload_ref(job.scene)
            and (url, job.scene) not in self._unnamed
        ):
            # Shared storage: rendered in place from the node's scenes folder, where the
            # scene's relative paths resolve. A node without it is sent the .blend alone.
            try:
                return await self.client.submit(
                    url, job.scene, frames, fmt, allow_missing=allow, session=job.id, **what
                )
            except SceneMissing as exc:
                log.warning("job %s: %s; sending it the .blend alone", job.id, exc)
                self._unnamed.add((url, job.scene))
        await self._ensure(url, job, manifest)
        submit = partial(
            self.client.submit, url, f"sha256:{job.scene_sha}", frames, fmt,
            manifest=manifest, allow_missing=allow, session=job.id, **what,
        )  # fmt: skip
        try:
            return await submit()
        except SceneMissing as exc:
            # The node lost it (a restart on a fresh disk, a cleanup): push it and try once more.
            log.info("job %s on %s: %s; pushing it again", job.id, url, exc)
            self._scenes_held.discard((url, job.scene_sha))
            self._files_held.discard((url, job.id))
            await self._ensure(url, job, manifest)
            return await submit()

    async def _until_lost(self, url: str) -> None:
        """Return once the node is lost, or paused by an operator: its batch is given up."""
        # Loss is a matter of the (injectable) clock passing a deadline: nothing to wait on.
        while not self.registry.is_lost(url) and not self.registry.is_paused(url):  # noqa: ASYNC110
            await asyncio.sleep(0.2)

    async def _attempt(
        self, url: str, job: Job, batch: QueuedBatch, book: BatchBook
    ) -> tuple[BatchState, bool]:
        """Push the scene, submit, follow; returns (batch end state, node still answering).
        What it learns goes into `book` as it goes: the attempt may be abandoned (the node
        lost) with frames collected and a node job to clean up."""
        try:
            try:
                taken = await self._submit(url, job, batch)
            finally:
                self.feed_done(batch.id)
            book.node_job = taken.id
            await self.store.run(self.store.set_node_job, batch.id, taken.id)
            self._following += 1  # counted against the farm's poll budget
            try:
                return await self._follow(url, job, batch, taken, book), True
            finally:
                self._following -= 1
        except NodeJobGone as exc:
            log.warning("job %s batch %s on %s: %s", job.id, batch.id, url, exc)
            return BatchState.LOST, True
        except NodeRejected as exc:
            log.warning("job %s batch %s on %s refused: %s", job.id, batch.id, url, exc)
            book.fail_uncollected(str(exc))
            return BatchState.FAILED, True
        except NodeError as exc:
            log.warning("job %s batch %s on %s: node not answering: %s", job.id, batch.id, url, exc)
            return BatchState.LOST, False

    async def _follow(
        self, url: str, job: Job, batch: QueuedBatch, taken: JobCreated, book: BatchBook
    ) -> BatchState:
        """Poll the node job, collecting frames as they are saved, until the batch is over;
        return its end state. The decisions are decisions.py's; this is their I/O."""
        interval = self.base_interval()
        seen = misses = 0
        clock = self.registry.clock
        last_end = clock()  # when a frame of the batch last ended (or it was submitted)
        # Set: the node holds the next answer until the job changes. The first poll waits so
        # from the version the node gave at submit: a job just started has nothing to tell.
        since: str | None = taken.version
        while True:
            if self.is_cancelled(job.id):
                return BatchState.CANCELLED
            try:
                status = await self.client.status(
                    url, taken.id, wait=interval, since=since, frames=len(batch.frames)
                )
            except NodeJobGone:
                raise
            except NodeError:
                misses += 1
                if misses >= MAX_STATUS_MISSES or self.registry.is_lost(url):
                    raise
                await asyncio.sleep(self.settings.poll_interval)
                continue
            misses = 0
            self.registry.seen(url)
            # From the hook: the scheduler wants to hear of the batch again within this long.
            wanted = None if self.on_status is None else self.on_status(url, batch, status)
            if status.warnings:
                await self._note_warnings(job, url, status.warnings)
            reading = read_poll(status, book)
            take_poll(book, reading)
            waiting = False
            if reading.ready:
                fetched = await self._collect(url, job, batch, taken.id, reading.ready)
                waiting = take_collection(book, fetched, status.state in FINAL_JOB_STATES)
            end = batch_end(status, book, waiting)
            if end is not None:
                return take_end(book, end)
            progressed = book.progress() > seen
            seen = book.progress()
            if progressed:
                last_end = clock()
            elif clock() - last_end > self.settings.batch_stall_seconds:
                why = (
                    f"no frame of this batch ended on {url} in "
                    f"{self.settings.batch_stall_seconds:g} s (--batch-stall-seconds): taken back"
                )
                log.warning("job %s batch %s: %s", job.id, batch.id, why)
                book.fail_uncollected(why)
                return BatchState.FAILED
            interval = next_interval(
                interval, progressed, self.base_interval(), wanted, self.settings.poll_interval
            )
            since = held_since(status, waiting)
            if since is None:
                await asyncio.sleep(interval)

    async def _note_warnings(self, job: Job, url: str, warnings: list[str]) -> None:
        """Files a node rendered the job without (it allows them): shown with the job."""
        seen = self._warned.setdefault(job.id, set())
        new = [f"{w} (on {url})" for w in warnings if w not in seen]
        if new:
            seen.update(warnings)
            await self.store.run(self.store.add_asset_warnings, job.id, new)

    async def _collect(
        self, url: str, job: Job, batch: QueuedBatch, node_job: str, ready: dict[int, float | None]
    ) -> Fetched:
        """Fetch the frames `ready` (frame -> render seconds) in one archive and record them in
        one transaction."""
        # The batch owns its frames until it settles; only a cancel takes them away early.
        if self.is_cancelled(job.id):
            return Fetched()
        if not self._fed.is_set():
            with contextlib.suppress(TimeoutError):  # a long scene push holds nobody long
                await asyncio.wait_for(self._fed.wait(), FEED_FIRST_SECONDS)
        renders = self.settings.renders_dir
        tile = unit_tile(batch.frames[0])
        fmt = piece_format(job.format, job.tiles, job.sample_parts)
        suffix = output_suffix(fmt)
        if job.pieces > 1:
            targets = {f: tile_path(renders, job.id, f, tile, suffix) for f in ready}
        else:
            targets = {f: output_path(renders, job.id, f, suffix) for f in ready}
        files = self._frame_files(targets, batch.id, fmt)
        why = f"frame done on {url} but not served"
        try:
            await self.client.download_archive(url, node_job, list(ready), files)
        except FrameMissing as exc:
            why = str(exc)
        except NodeError:
            # What came before the node failed is in place: record it.
            await self._keep(url, job, batch, files, ready)
            raise
        finally:
            files.discard()
        await self._keep(url, job, batch, files, ready)
        if files.ignored:
            log.warning(
                "job %s batch %s: %s sent unexpected members %s",
                job.id, batch.id, url, files.ignored[:5],
            )  # fmt: skip
        settled = {*files.placed, *files.failed}
        return Fetched(files.placed, files.failed, {f: why for f in ready if f not in settled})

    def _frame_files(self, targets: dict[int, Path], tag: str, fmt: str) -> FrameFiles:
        """Where the frames fetched from a node job go (`targets`), written beside them first
        under `tag` (the batch or node job), each checked to be an image in `fmt`."""
        return FrameFiles(
            targets,
            lambda dest: part_path(dest, tag),
            max_bytes=int(self.settings.max_frame_mb * (1 << 20)),
            check=partial(image_problem, image_format(fmt).name),
        )

    async def _keep(
        self,
        url: str,
        job: Job,
        batch: QueuedBatch,
        files: FrameFiles,
        seconds: dict[int, float | None],
    ) -> None:
        """Record the frames `files` placed; a split job's frames whose pieces are all in are
        stitched (regions) or merged and developed on `url` (sample parts) first; those that
        could not be move to `files.failed`."""
        if job.pieces > 1 and files.placed:
            piece = unit_tile(batch.frames[0])
            # One at a time for a job: two batches ending together would each find every piece
            # of a frame in and put it together twice, one deleting the pieces under the other.
            async with self._finishing.setdefault(job.id, asyncio.Lock()):
                if job.tiles > 1:
                    unfinished = await self._stitch(job, files.placed, piece)
                else:
                    unfinished = await self._merge(url, job, files.placed, piece)
            files.placed = [f for f in files.placed if f not in unfinished]
            files.failed.update(unfinished)
        await self._record(job, batch, files.placed, seconds)

    async def _stitch(self, job: Job, frames: list[int], tile: int) -> dict[int, str]:
        """Each of `frames` whose regions are all collected now, this batch's `tile` among
        them, is stitched into the frame the user asked for and checked; returns the frames
        that could not be (frame -> why), whose region this batch must render again."""
        look = await self._look_of(job)
        renders = self.settings.renders_dir
        cols, rows = grid(job.tiles)
        suffix = output_suffix(tile_format(job.format))
        out_suffix = output_suffix(job.format)
        name = image_format(job.format).name
        failed: dict[int, str] = {}
        for frame in frames:
            regions = {t: tile_path(renders, job.id, frame, t, suffix) for t in range(job.tiles)}
            out = output_path(renders, job.id, frame, out_suffix)
            try:
                done = await asyncio.to_thread(
                    stitch_frame, regions, cols, rows, out, size=look.size,
                    attributes=look.attributes, margin=job.tile_margin,
                )  # fmt: skip
                if done is not None:
                    with await asyncio.to_thread(out.open, "rb") as fh:
                        problem = image_problem(name, fh.read(16))
                    if problem:
                        out.unlink(missing_ok=True)
                        raise StitchError(f"the stitched frame is {problem}")
            except (StitchError, OSError) as exc:
                why = f"frame {frame} could not be stitched from its {job.tiles} regions: {exc}"
                log.error("job %s: %s", job.id, why)
                regions[tile].unlink(missing_ok=True)  # rendered again, not kept
                failed[frame] = why
        return failed

    async def _merge(self, url: str, job: Job, frames: list[int], part: int) -> dict[int, str]:
        """Each of `frames` whose sample parts are all collected now, this batch's `part`
        among them, is merged (stitch.merge_samples) and developed into the frame the user
        asked for on `url`, the node that rendered the last part (`_develop`); returns the
        frames that could not be (frame -> why), whose part this batch must render again."""
        assert job.samples is not None
        renders = self.settings.renders_dir
        suffix = output_suffix(PART_FORMAT)
        counts = [
            sample_range(k, job.sample_parts, job.samples)[1] for k in range(job.sample_parts)
        ]
        merged: dict[int, Path] = {}
        failed: dict[int, str] = {}
        for frame in frames:
            parts = [
                (tile_path(renders, job.id, frame, k, suffix), n) for k, n in enumerate(counts)
            ]
            if not all(await asyncio.gather(*(asyncio.to_thread(p.is_file) for p, _ in parts))):
                continue
            out = tiles_dir(renders, job.id, frame) / "merged.exr"
            try:
                await asyncio.to_thread(merge_samples, parts, out)
                merged[frame] = out
            except (StitchError, OSError) as exc:
                failed[frame] = f"the parts of frame {frame} could not be merged: {exc}"
        if merged:
            failed.update(await self._develop(url, job, merged))
        for frame, why in failed.items():
            log.error("job %s: %s", job.id, why)
            await asyncio.to_thread(tile_path(renders, job.id, frame, part, suffix).unlink, True)
        for frame in merged:
            if frame not in failed:
                await asyncio.to_thread(remove_pieces, tiles_dir(renders, job.id, frame))
        return failed

    async def _develop(self, url: str, job: Job, merged: dict[int, Path]) -> dict[int, str]:
        """Have `url` save each merged frame as the scene saves its renders (Blender's own
        colour management and output settings: render_node blender.DEVELOP_ONE), and put
        the frames in place; returns the frames that could not be (frame -> why)."""
        renders = self.settings.renders_dir
        targets = {f: output_path(renders, job.id, f, output_suffix(job.format)) for f in merged}
        failed: dict[int, str] = {}
        node_job = None
        try:
            shas = {}
            for frame, path in merged.items():
                shas[frame], _ = await asyncio.to_thread(file_sha256, path)
                await self.client.put_file(url, shas[frame], path)
            fmt = job.format if job.format_given else None
            frames = sorted(merged)
            taken = await self._send(url, job, compact_frames(frames), fmt, develop=shas)
            node_job = taken.id
            status = await self._wait_for(url, taken, len(frames))
            ended = {f.frame: f for f in status.frames}
            done = [f for f in frames if f in ended and ended[f].state == FrameState.DONE]
            for frame in frames:
                if frame not in done:
                    error = ended[frame].error if frame in ended else None
                    failed[frame] = error or status.error or f"the node job ended {status.state}"
            if done:
                files = self._frame_files({f: targets[f] for f in done}, taken.id, job.format)
                try:
                    await self.client.download_archive(url, taken.id, done, files)
                finally:
                    files.discard()
                failed.update(files.failed)
                failed.update(
                    {f: "developed but not served" for f in done if f not in files.placed}
                )
        except NodeError as exc:
            failed.update({f: str(exc) for f in merged if f not in failed})
        finally:
            if node_job is not None:
                with contextlib.suppress(NodeError):
                    await self.client.delete(url, node_job)
        return {f: f"frame {f} could not be developed on {url}: {why}" for f, why in failed.items()}

    async def _wait_for(self, url: str, taken: JobCreated, frames: int) -> JobDetail:
        """Follow a node job of ours to its end; NodeError when it stalls past
        --batch-stall-seconds or the node stops answering."""
        clock = self.registry.clock
        deadline = clock() + self.settings.batch_stall_seconds
        since: str | None = taken.version
        while True:
            status = await self.client.status(
                url, taken.id, wait=self.settings.poll_interval, since=since, frames=frames
            )
            if status.state in FINAL_JOB_STATES:
                return status
            if clock() > deadline:
                raise NodeError(f"developing took over {self.settings.batch_stall_seconds:g} s")
            if status.version == since:
                await asyncio.sleep(self.settings.poll_interval)
            since = status.version

    async def _look_of(self, job: Job) -> _Look:
        look = self._looks.get(job.id)
        if look is None:
            look = self._looks[job.id] = await self._look(job)
        return look

    async def _look(self, job: Job) -> _Look:
        """What a stitched frame of the job must be: the scene's size, its JPEG quality."""
        path = await job_scene_file(job, self.store, self.files)
        if path is None:
            return _Look(None, {})
        size, quality = await asyncio.gather(
            asyncio.to_thread(scene_resolution, path), asyncio.to_thread(scene_quality, path)
        )
        attributes: dict[str, Any] = {}
        if job.format == "JPEG":
            attributes["Compression"] = f"jpeg:{quality or DEFAULT_JPEG_QUALITY}"
        return _Look(size, attributes)

    async def _record(
        self, job: Job, batch: QueuedBatch, frames: list[int], seconds: dict[int, float | None]
    ) -> None:
        if not frames:
            return
        offset = unit(0, unit_tile(batch.frames[0]))
        newly = await self.store.run(
            self.store.collect_frames, job.id, batch.id, [(f + offset, seconds[f]) for f in frames]
        )
        self.metrics.frames_rendered.inc(len(newly))
        for frame in newly:
            secs = seconds[frame - offset]
            if secs is not None and math.isfinite(secs):  # checked at the edge; and here
                self.metrics.frame_seconds.observe(secs)
