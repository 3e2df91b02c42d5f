"""SQLite persistence: jobs with incremental counters, frames, batches and scenes.

One connection, used from one worker thread (`Store.run`), so the event loop never blocks on disk
and writes never race. Counters on the job row keep status reads O(batches), never O(frames).
"""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from farm_common.frames import compact_frames
from farm_common.protocol import FrameState, JobState
from farm_common.tiles import tiled_units, unit, unit_frame
from orchestrator.store.migrations import migrate
from orchestrator.store.queries import Job, Queries
from orchestrator.store.tokens import TokenQueries
from orchestrator.store.transitions import final_job_state, frame_gives_up, split_batches
from orchestrator.store.tx import Tx

T = TypeVar("T")

UNFINISHED = (JobState.QUEUED, JobState.RUNNING)
WRITE_WAIT_SECONDS = 60.0


@dataclass
class QueuedBatch:
    """A batch waiting in the in-memory queue; mirrors a `queued` row of the batches table."""

    id: str
    job: str
    frames: list[int]
    avoid: set[str] = field(default_factory=set)
    attempts: int = 0


@dataclass
class Requeued:
    """What a requeue sent back: its batches, and the units that were done (their files go)."""

    batches: list[QueuedBatch]
    were_done: list[int]
    frames: str  # the frames, as a spec
    frame_numbers: set[int] = field(default_factory=set)


@dataclass
class Settled:
    requeued: list[QueuedBatch]
    failed: list[int]
    retried: int
    job_state: str | None


def batch_spec(frames: list[int]) -> str:
    """A batch's frames as the API shows them ("1-8"): a tiled job's without their region."""
    return compact_frames(unit_frame(f) for f in frames)


def new_id() -> str:
    return uuid.uuid4().hex[:12]


MAX_ASSET_WARNINGS = 200


class Store(Queries, TokenQueries):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Two processes write (links.ProcessLink: the API's jobs and scenes, the scheduler's the
        # rest): one waits for the other's transaction, a 100,000-frame job's included.
        self._db = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=WRITE_WAIT_SECONDS
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        migrate(self._db)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        # Status reads get their own connection and thread: under WAL they see the last commit
        # without queueing behind the frame-by-frame writes of hundreds of node workers.
        reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        reader.row_factory = sqlite3.Row
        reader.execute("PRAGMA query_only=ON")
        self._view = copy.copy(self)
        self._view._db = reader
        self._read_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-read")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store method on the store thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))

    async def read(self, fn: Callable[[Store], T]) -> T:
        """Run `fn(store)` on the reader thread, where `store` reads through its own connection.

        Only for reads: `fn` must not write (the connection is query-only)."""
        return await asyncio.get_running_loop().run_in_executor(self._read_executor, fn, self._view)

    def close(self) -> None:
        self._read_executor.shutdown(wait=True)
        self._view._db.close()
        self._executor.shutdown(wait=True)
        self._db.close()

    def _tx(self) -> Tx:
        return Tx(self._db, self._lock)

    # -- scenes -------------------------------------------------------------------------------
    def add_scene(self, sha: str, path: Path, name: str | None, size: int, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO scenes (sha, path, name, size, created) VALUES (?,?,?,?,?)",
                (sha, str(path), name, size, now),
            )

    def scene_path(self, sha: str) -> Path | None:
        row = self._db.execute("SELECT path FROM scenes WHERE sha=?", (sha,)).fetchone()
        return Path(row["path"]) if row else None

    # -- what the scheduler learned (node speeds) ---------------------------------------------
    def save_learned(self, name: str, value: Any, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO learned (name, value, updated) VALUES (?,?,?)",
                (name, json.dumps(value), now),
            )

    def load_learned(self, name: str) -> Any:
        """What `save_learned` kept under `name` (None: nothing, or not readable)."""
        row = self._db.execute("SELECT value FROM learned WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row["value"])
        except ValueError:
            return None

    # -- jobs ---------------------------------------------------------------------------------
    def create_job(
        self,
        *,
        scene: str,
        scene_sha: str,
        frames_spec: str,
        frames: list[int],
        fmt: str,
        priority: int,
        batch_size: int,
        video: bool,
        now: float,
        adaptive: bool = False,
        blender_version: str | None = None,
        device: str | None = None,
        saved_by: str | None = None,
        manifest: str | None = None,
        format_given: bool = True,
        allow_missing: bool = False,
        assets: str | None = None,
        tiles: int = 1,
        tile_margin: int = 0,
        sample_parts: int = 1,
        samples: int | None = None,
        tags: list[str] | None = None,
        after: list[str] | None = None,
        submitted_by: str | None = None,
    ) -> tuple[Job, list[QueuedBatch]]:
        """A new job, its frames cut into `batch_size` batches; `adaptive`: the scheduler may
        cut them again to fit each node's speed (no batch size was asked for);
        `blender_version`: only nodes running that Blender render it (policy.blender_matches);
        `tiles`: each frame is split in that many regions (units, farm_common/tiles.py);
        `sample_parts`: or in that many parts of its `samples`."""
        job_id = new_id()
        units = tiled_units(frames, tiles * sample_parts, batch_size)
        batches = [QueuedBatch(new_id(), job_id, b) for b in split_batches(units, batch_size)]
        with self._tx() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            db.execute(
                "INSERT INTO jobs (id, seq, scene, scene_sha, frames_spec, format, priority,"
                " batch_size, video, state, created, total, adaptive, blender_version,"
                " manifest, format_given, allow_missing, assets, device, saved_by, tiles,"
                " tile_margin, sample_parts, samples, tags, after, submitted_by)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job_id, seq, scene, scene_sha, frames_spec, fmt, priority, batch_size,
                 int(video), JobState.QUEUED, now, len(units), int(adaptive), blender_version,
                 manifest, int(format_given), int(allow_missing), assets, device, saved_by,
                 tiles, tile_margin, sample_parts, samples,
                 json.dumps(sorted(tags)) if tags else None,
                 json.dumps(after) if after else None, submitted_by),
            )  # fmt: skip
            db.executemany(
                "INSERT INTO frames (job, frame, idx, state) VALUES (?,?,?,'pending')",
                ((job_id, f, i) for i, f in enumerate(units)),
            )
            self._insert_batches(db, batches)
        job = self.get_job(job_id)
        assert job is not None
        return job, batches

    def create_video_job(
        self,
        source: Job,
        frames_spec: str,
        count: int,
        *,
        fps: int,
        priority: int,
        after: list[str],
        now: float,
        submitted_by: str | None = None,
    ) -> Job:
        """A job that encodes `count` frames of `source` (`frames_spec`) to an mp4 at `fps`,
        once the jobs of `after` completed. It has no frames rows and no batches."""
        job_id = new_id()
        with self._tx() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            db.execute(
                "INSERT INTO jobs (id, seq, scene, scene_sha, frames_spec, format, priority,"
                " batch_size, video, state, created, total, kind, source, fps, after,"
                " submitted_by) VALUES (?,?,?,?,?,?,?,?,1,?,?,?,'video',?,?,?,?)",
                (job_id, seq, source.scene, source.scene_sha, frames_spec, source.format,
                 priority, count, JobState.QUEUED, now, count, source.id, fps,
                 json.dumps(after) if after else None, submitted_by),
            )  # fmt: skip
        job = self.get_job(job_id)
        assert job is not None
        return job

    def start_video(self, job_id: str, now: float) -> bool:
        """A video job begins to encode; False when it is not queued or running any more."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state='running', started=COALESCE(started, ?), rendering=total"
                " WHERE id=? AND kind='video' AND state IN ('queued','running')",
                (now, job_id),
            )
            return cur.rowcount == 1

    def end_video(self, job_id: str, error: str | None, now: float) -> str | None:
        """A video job is over: completed, or failed with `error`. Returns its state, or None
        when it had ended already (cancelled meanwhile)."""
        state = JobState.COMPLETED if error is None else JobState.FAILED
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state=?, finished=?, rendering=0, error=?,"
                " done=CASE WHEN ? THEN total ELSE 0 END,"
                " failed=CASE WHEN ? THEN 0 ELSE total END"
                " WHERE id=? AND kind='video' AND state IN ('queued','running')",
                (state, now, error, error is None, error is None, job_id),
            )
            return state if cur.rowcount == 1 else None

    def restart_video(self, job_id: str, now: float) -> bool:
        """Queue a video job that has ended to encode again (kept in its requeue history)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state='queued', done=0, failed=0, rendering=0, error=NULL,"
                " started=NULL, finished=NULL"
                " WHERE id=? AND kind='video' AND state NOT IN ('queued','running')",
                (job_id,),
            )
            if cur.rowcount != 1:
                return False
            db.execute(
                "INSERT INTO requeues (job, at, asked, frames, count)"
                " SELECT id, ?, 'video', frames_spec, total FROM jobs WHERE id=?",
                (now, job_id),
            )
            return True

    def _insert_batches(self, db: sqlite3.Connection, batches: Iterable[QueuedBatch]) -> None:
        for b in batches:
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM batches WHERE job=?", (b.job,)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO batches (id, job, seq, frames, spec, avoid, state, attempts)"
                " VALUES (?,?,?,?,?,?,'queued',?)",
                (
                    b.id,
                    b.job,
                    seq,
                    json.dumps(b.frames),
                    batch_spec(b.frames),
                    json.dumps(sorted(b.avoid)),
                    b.attempts,
                ),
            )

    def queued_batches(self, job_id: str) -> list[QueuedBatch]:
        """A job's batches still waiting for a node, in order."""
        rows = self._db.execute(
            "SELECT id, job, frames, avoid, attempts FROM batches WHERE job=? AND state='queued'"
            " ORDER BY seq",
            (job_id,),
        )
        return [
            QueuedBatch(r["id"], r["job"], json.loads(r["frames"]), set(json.loads(r["avoid"])),
                        r["attempts"])
            for r in rows
        ]  # fmt: skip

    # -- batch lifecycle ----------------------------------------------------------------------
    def dispatch_batch(
        self,
        batch: QueuedBatch,
        node: str,
        now: float,
        absorbed: Collection[str] = (),
        remainder: QueuedBatch | None = None,
    ) -> bool:
        """The batch goes to `node`: its frames are now rendering there.

        A batch cut to size at dispatch keeps its id with its new frames; the queued batches it
        `absorbed` are gone, and the frames cut off are queued as `remainder`.
        False (and nothing changes) when the job was cancelled or ended in the meantime.
        """
        with self._tx() as db:
            job = db.execute("SELECT state FROM jobs WHERE id=?", (batch.job,)).fetchone()
            if job is None or job["state"] not in UNFINISHED:
                return False
            db.execute(
                "UPDATE batches SET state='running', node=?, started=?, attempts=attempts+1,"
                " frames=?, spec=? WHERE id=?",
                (node, now, json.dumps(batch.frames), batch_spec(batch.frames), batch.id),
            )
            db.executemany(
                "DELETE FROM batches WHERE id=? AND state='queued'", ((b,) for b in absorbed)
            )
            if remainder is not None:
                self._insert_batches(db, [remainder])
            marks = ",".join("?" * len(batch.frames))
            # `+state`: look the frames up by the primary key. Left to itself SQLite picks the
            # (job, state) index and walks every pending frame of the job: 9 ms a batch at
            # 100,000 frames, 60 us this way.
            cur = db.execute(
                f"UPDATE frames SET state='rendering', batch=?, node=? WHERE job=? AND"
                f" +state='pending' AND frame IN ({marks})",
                (batch.id, node, batch.job, *batch.frames),
            )
            db.execute(
                "UPDATE jobs SET rendering=rendering+?, state='running',"
                " started=COALESCE(started, ?) WHERE id=? AND state IN ('queued','running')",
                (cur.rowcount, now, batch.job),
            )
            return True

    def add_asset_warnings(self, job_id: str, warnings: list[str]) -> None:
        """Keep what nodes said of missing files a job renders without (at most 200 lines)."""
        with self._tx() as db:
            row = db.execute("SELECT assets FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                return
            assets: dict[str, Any] = json.loads(row[0]) if row[0] else {"files": 0, "bytes": 0}
            known: list[str] = assets.setdefault("warnings", [])
            known.extend(w for w in dict.fromkeys(warnings) if w not in known)
            del known[MAX_ASSET_WARNINGS:]
            db.execute("UPDATE jobs SET assets=? WHERE id=?", (json.dumps(assets), job_id))

    def set_node_job(self, batch_id: str, node_job_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE batches SET node_job_id=? WHERE id=?", (node_job_id, batch_id))

    def collect_frame(self, job_id: str, frame: int, batch_id: str, seconds: float | None) -> bool:
        """Mark a frame collected; False unless this batch still owns it (never done twice)."""
        return bool(self.collect_frames(job_id, batch_id, [(frame, seconds)]))

    def collect_frames(
        self, job_id: str, batch_id: str, frames: Iterable[tuple[int, float | None]]
    ) -> list[int]:
        """Mark (frame, seconds) pairs collected in one transaction; return the frames newly
        recorded: those this batch still owns and that were not done yet (never done twice)."""
        with self._tx() as db:
            newly: list[int] = []
            for frame, seconds in frames:
                cur = db.execute(
                    "UPDATE frames SET state='done', seconds=?, error=NULL WHERE job=? AND frame=?"
                    " AND batch=? AND state='rendering'",
                    (seconds, job_id, frame, batch_id),
                )
                if cur.rowcount == 1:
                    newly.append(frame)
            if newly:
                db.execute(
                    "UPDATE jobs SET done=done+?, rendering=rendering-? WHERE id=?",
                    (len(newly), len(newly), job_id),
                )
                db.execute(
                    "UPDATE batches SET done_count=done_count+? WHERE id=?", (len(newly), batch_id)
                )
            return newly

    def settle_batch(
        self,
        batch_id: str,
        state: str,
        errors: dict[int, str],
        live_nodes: Collection[str],
        max_attempts: int,
        now: float,
    ) -> Settled:
        """End a batch: its frames still rendering go back to the queue or fail for good.

        Frames in `errors` failed on the batch's node (an attempt is counted, the node noted);
        the others were interrupted (node lost, request failed) and are requeued as they were.
        """
        with self._tx() as db:
            b = db.execute("SELECT * FROM batches WHERE id=?", (batch_id,)).fetchone()
            job = db.execute(
                "SELECT state, batch_size FROM jobs WHERE id=?", (b["job"],)
            ).fetchone()
            node = b["node"]
            # By key among the batch's own frames, not a walk of all the job's rendering ones.
            rows = db.execute(
                "SELECT frame, attempts, nodes_failed FROM frames WHERE job=? AND frame IN"
                " (SELECT value FROM json_each(?)) AND batch=? AND +state='rendering' ORDER BY idx",
                (b["job"], b["frames"], batch_id),
            ).fetchall()
            retry: list[int] = []
            again: list[int] = []
            failed: list[int] = []
            avoid: dict[int, set[str]] = {}
            for r in rows:
                frame = r["frame"]
                nodes_failed = set(json.loads(r["nodes_failed"]))
                if frame in errors:
                    nodes_failed.add(node)
                    attempts = r["attempts"] + 1
                    gives_up = frame_gives_up(nodes_failed, attempts, live_nodes, max_attempts)
                    new_state = FrameState.FAILED if gives_up else FrameState.PENDING
                    db.execute(
                        "UPDATE frames SET state=?, attempts=?, nodes_failed=?, error=?,"
                        " batch=NULL WHERE job=? AND frame=?",
                        (new_state, attempts, json.dumps(sorted(nodes_failed)), errors[frame],
                         b["job"], frame),
                    )  # fmt: skip
                    (failed if gives_up else retry).append(frame)
                else:
                    db.execute(
                        "UPDATE frames SET state='pending', batch=NULL WHERE job=? AND frame=?",
                        (b["job"], frame),
                    )
                    again.append(frame)
                avoid[frame] = nodes_failed
            db.execute(
                "UPDATE jobs SET rendering=rendering-?, failed=failed+? WHERE id=?",
                (len(rows), len(failed), b["job"]),
            )
            db.execute("UPDATE batches SET state=?, finished=? WHERE id=?", (state, now, batch_id))
            requeued: list[QueuedBatch] = []
            if job["state"] in UNFINISHED:
                for group in (retry, again):
                    for part in split_batches(group, job["batch_size"]):
                        avoid_nodes = set().union(*(avoid[f] for f in part))
                        requeued.append(QueuedBatch(new_id(), b["job"], part, avoid_nodes))
                self._insert_batches(db, requeued)
            job_state = self._maybe_finish(db, b["job"], now)
        return Settled(requeued, failed, len(retry), job_state)

    def _maybe_finish(self, db: sqlite3.Connection, job_id: str, now: float) -> str | None:
        j = db.execute(
            "SELECT state, total, done, failed FROM jobs WHERE id=?", (job_id,)
        ).fetchone()
        if j["state"] not in UNFINISHED:
            return None
        state = final_job_state(j["total"], j["done"], j["failed"])
        if state:
            db.execute(
                "UPDATE jobs SET state=?, finished=?, rendering=0 WHERE id=?", (state, now, job_id)
            )
            # Batches of another slot whose frames are all collected but which have not
            # settled yet: done now, so a finished job never lists a running batch.
            db.execute(
                "UPDATE batches SET state='done', finished=? WHERE job=? AND state='running'"
                " AND done_count = json_array_length(frames)",
                (now, job_id),
            )
        return state

    def fail_waiting_frames(
        self, job_id: str, error: str, nodes: Collection[str], now: float
    ) -> tuple[int, str | None]:
        """Fail for good the job's frames that wait for a node (none will render them: every
        node refused the scene); their queued batches go. Returns (frames failed, the job's
        final state if it ended)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE frames SET state='failed', error=?, nodes_failed=?, batch=NULL"
                " WHERE job=? AND state='pending'",
                (error, json.dumps(sorted(nodes)), job_id),
            )
            db.execute(
                "UPDATE jobs SET failed=failed+? WHERE id=? AND state IN ('queued','running')",
                (cur.rowcount, job_id),
            )
            db.execute("DELETE FROM batches WHERE job=? AND state='queued'", (job_id,))
            return cur.rowcount, self._maybe_finish(db, job_id, now)

    def finish_if_complete(self, job_id: str, now: float) -> str | None:
        with self._tx() as db:
            return self._maybe_finish(db, job_id, now)

    def cancel_job(self, job_id: str, now: float) -> list[tuple[str, str]]:
        """Cancel a job; returns (node, node_job_id) of its running batches to cancel there."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state='cancelled', finished=?, rendering=0 WHERE id=?"
                " AND state IN ('queued','running')",
                (now, job_id),
            )
            if cur.rowcount == 0:
                return []
            running = db.execute(
                "SELECT node, node_job_id FROM batches WHERE job=? AND state='running'"
                " AND node_job_id IS NOT NULL",
                (job_id,),
            ).fetchall()
            db.execute(
                "UPDATE batches SET state='cancelled', finished=? WHERE job=? AND"
                " state IN ('queued','running')",
                (now, job_id),
            )
            db.execute(
                "UPDATE frames SET state='pending', batch=NULL WHERE job=? AND state='rendering'",
                (job_id,),
            )
            return [(r["node"], r["node_job_id"]) for r in running]

    def requeue(
        self, job_id: str, frames: list[int] | None, asked: str, now: float
    ) -> Requeued | None:
        """Send frames of a job back to the queue: every piece of `frames` (done ones render
        again), or with None those not done (failed). A job that had ended is queued again,
        with the frames it never rendered (a cancelled job resumes). Their attempts, failures
        and the nodes they failed on start over. `asked` is kept in the job's history with
        what it sent back. None: no such job."""
        with self._tx() as db:
            job = db.execute(
                "SELECT state, batch_size, tiles * sample_parts AS pieces FROM jobs WHERE id=?",
                (job_id,),
            ).fetchone()
            if job is None:
                return None
            final = job["state"] not in UNFINISHED
            # What a job that had ended never rendered goes back with what was asked for.
            query = "SELECT frame, state FROM frames WHERE job=:job AND (" + (
                "state='pending' OR " if final else ""
            )
            args: dict[str, Any] = {"job": job_id}
            if frames is None:
                query += "state='failed')"
            else:
                query += (
                    "state IN ('done','failed') AND frame IN (SELECT value FROM json_each(:units)))"
                )
                args["units"] = json.dumps(
                    [unit(f, t) for f in frames for t in range(job["pieces"])]
                )
            rows = db.execute(query + " ORDER BY idx", args).fetchall()
            chosen = [r["frame"] for r in rows]
            if not chosen:
                return Requeued([], [], "")
            db.execute(
                "UPDATE frames SET state='pending', attempts=0, nodes_failed='[]', error=NULL,"
                " batch=NULL, node=NULL, seconds=NULL WHERE job=? AND frame IN"
                " (SELECT value FROM json_each(?))",
                (job_id, json.dumps(chosen)),
            )
            were_done = [r["frame"] for r in rows if r["state"] == "done"]
            failed = sum(1 for r in rows if r["state"] == "failed")
            db.execute(
                "UPDATE jobs SET done=done-?, failed=failed-?, error=NULL, finished=NULL,"
                " state=CASE WHEN state IN ('queued','running') THEN state ELSE 'queued' END"
                " WHERE id=?",
                (len(were_done), failed, job_id),
            )
            # In batches of their own: a running job's other frames are in its queue already.
            batches = [
                QueuedBatch(new_id(), job_id, part)
                for part in split_batches(chosen, job["batch_size"])
            ]
            self._insert_batches(db, batches)
            spec = batch_spec(chosen)
            db.execute(
                "INSERT INTO requeues (job, at, asked, frames, count) VALUES (?,?,?,?,?)",
                (job_id, now, asked[:200], spec, len({unit_frame(f) for f in chosen})),
            )
        return Requeued(batches, were_done, spec, {unit_frame(f) for f in chosen})

    def delete_job(self, job_id: str) -> str | None:
        """Remove a job that has ended, with its frames, batches and history; returns why it
        was not (None: gone)."""
        with self._tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                return "missing"
            if row["state"] in UNFINISHED:
                return str(row["state"])
            for table, key in (("frames", "job"), ("batches", "job"), ("requeues", "job"),
                               ("jobs", "id")):  # fmt: skip
                db.execute(f"DELETE FROM {table} WHERE {key}=?", (job_id,))
        return None

    def requeue_history(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT at, asked, frames, count FROM requeues WHERE job=? ORDER BY rowid", (job_id,)
        )
        return [dict(r) for r in rows]

    # -- restart ------------------------------------------------------------------------------
    def recover(
        self, collected: Callable[[str, int], set[int]]
    ) -> tuple[list[QueuedBatch], list[tuple[str, str]]]:
        """After a restart: requeue unfinished work; return (queue, orphaned node jobs).

        `collected(job, pieces)` lists frames (units of a split job) whose output file exists: a
        crash between writing a frame and recording it must not make us render (and write) it
        again.
        """
        queue: list[QueuedBatch] = []
        orphans: list[tuple[str, str]] = []
        with self._tx() as db:
            jobs = db.execute(
                "SELECT id, batch_size, tiles * sample_parts AS pieces FROM jobs"
                " WHERE state IN ('queued','running')"
                " ORDER BY seq"
            ).fetchall()
            for j in jobs:
                job_id = j["id"]
                orphans += [
                    (r["node"], r["node_job_id"])
                    for r in db.execute(
                        "SELECT node, node_job_id FROM batches WHERE job=? AND state='running'"
                        " AND node_job_id IS NOT NULL",
                        (job_id,),
                    )
                ]
                db.execute(
                    "UPDATE batches SET state='interrupted' WHERE job=? AND state='running'",
                    (job_id,),
                )
                db.execute("DELETE FROM batches WHERE job=? AND state='queued'", (job_id,))
                db.execute(
                    "UPDATE frames SET state='pending', batch=NULL WHERE job=?"
                    " AND state='rendering'",
                    (job_id,),
                )
                on_disk = collected(job_id, j["pieces"])
                pending = db.execute(
                    "SELECT frame, nodes_failed FROM frames WHERE job=? AND state='pending'"
                    " ORDER BY idx",
                    (job_id,),
                ).fetchall()
                todo: list[int] = []
                avoid: dict[int, set[str]] = {}
                for r in pending:
                    if r["frame"] in on_disk:
                        db.execute(
                            "UPDATE frames SET state='done' WHERE job=? AND frame=?",
                            (job_id, r["frame"]),
                        )
                    else:
                        todo.append(r["frame"])
                        avoid[r["frame"]] = set(json.loads(r["nodes_failed"]))
                counts = dict(
                    db.execute(
                        "SELECT state, COUNT(*) FROM frames WHERE job=? GROUP BY state", (job_id,)
                    ).fetchall()
                )
                db.execute(
                    "UPDATE jobs SET done=?, failed=?, rendering=0 WHERE id=?",
                    (counts.get("done", 0), counts.get("failed", 0), job_id),
                )
                batches = [
                    QueuedBatch(new_id(), job_id, part, set().union(*(avoid[f] for f in part)))
                    for part in split_batches(todo, j["batch_size"])
                ]
                self._insert_batches(db, batches)
                queue += batches
        return queue, orphans
