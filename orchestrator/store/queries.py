"""Read-side of the store: jobs, their batches and frames as the API and dashboard show them.

Mixed into `Store`; every query reads counters or one job's batches, never all frames, except
the per-frame listings that are asked for explicitly.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from farm_common.tiles import FRAME_MASK, TILE_SHIFT, unit, unit_frame, unit_tile


@dataclass
class Job:
    id: str
    seq: int
    scene: str
    scene_sha: str
    frames_spec: str
    format: str
    priority: int
    batch_size: int
    video: int
    state: str
    created: float
    started: float | None
    finished: float | None
    error: str | None
    total: int
    done: int
    failed: int
    rendering: int
    adaptive: int = 0  # 1: batches are cut to each node's speed at dispatch
    # The file name the scene was uploaded as (or its name in the scenes folder).
    scene_name: str | None = None
    blender_version: str | None = None  # only nodes running this Blender render the job
    # A packed shot: its manifest as JSON (relative path -> sha256, and the main file).
    manifest: str | None = None
    format_given: int = 1  # 0: `format` is the scene's own, and nodes are not told (-F)
    allow_missing: int = 0  # 1: frames render although files the scene needs are missing
    # {"files", "bytes", "warnings"}: what the client packed, and what it said of missing files.
    assets: str | None = None
    device: str | None = None  # cpu | gpu: only nodes rendering on that render the job
    saved_by: str | None = None  # "5.0": the Blender that saved the scene; older nodes skip it
    # Regions each frame is split in (farm_common/tiles.py): the frames table then holds one
    # unit per region of a frame, and `total`, `done`, `failed`, `rendering` count units.
    tiles: int = 1
    tile_margin: int = 0  # pixels rendered around each region, cut off by the stitcher
    # Or parts of its Cycles `samples` it is split in, units as regions are (one split or
    # the other: `pieces` is the number of units a frame is).
    sample_parts: int = 1
    samples: int | None = None
    tags: str | None = None  # JSON list: only nodes with all of these render the job
    after: str | None = None  # JSON list: jobs that must complete before this one starts
    # "render", or "video": `source`'s frames (`frames_spec`) encoded to an mp4 at `fps` on
    # the orchestrator (orchestrator/video_jobs.py); it has no frame rows and no batches, and
    # its counters count the frames it encodes.
    kind: str = "render"
    submitted_by: str | None = None  # the name of the token that submitted it
    source: str | None = None
    fps: int | None = None

    @property
    def is_video(self) -> bool:
        return self.kind == "video"

    @property
    def after_ids(self) -> list[str]:
        return list(json.loads(self.after)) if self.after else []

    @property
    def tag_set(self) -> frozenset[str]:
        return frozenset(json.loads(self.tags)) if self.tags else frozenset()

    @property
    def pieces(self) -> int:
        return self.tiles * self.sample_parts

    @property
    def frame_count(self) -> int:
        return self.total // self.pieces

    @property
    def speed_key(self) -> str:
        """What node speeds are learned under: the scene, and the piece of a frame a unit is
        (a ninth of a frame, or of its samples, renders in about a ninth of the time)."""
        if self.sample_parts > 1:
            return f"{self.scene_sha}:samples{self.sample_parts}"
        return self.scene_sha if self.tiles == 1 else f"{self.scene_sha}:tiles{self.tiles}"


_JOB_SELECT = (
    "SELECT jobs.*, scenes.name AS scene_name FROM jobs"
    " LEFT JOIN scenes ON scenes.sha = jobs.scene_sha"
)


# Each a single row of JSON (see Queries.job_view). SQLite 3.40's aggregates take no ORDER BY;
# they add rows in the order the subquery gives them.
_BATCH_ROWS = "FROM batches WHERE job=:job ORDER BY seq"
_BATCHES_JSON = (
    "SELECT json_group_array(json(b)) FROM (SELECT json_object('id', id, 'spec', spec,"
    " 'node', node, 'node_job_id', node_job_id, 'state', state, 'attempts', attempts,"
    " 'done_count', done_count, 'started', started, 'finished', finished) AS b " + _BATCH_ROWS + ")"
)
# The batches as GET /render/{id} shows them, ready to be sent. Joined as text: a third
# cheaper than json_group_array, which parses each object again.
_API_BATCHES_JSON = (
    "SELECT '[' || coalesce(group_concat(b, ','), '') || ']' FROM (SELECT json_object('id', id,"
    " 'frames', spec, 'node', node, 'state', state, 'attempts', attempts, 'done', done_count,"
    " 'started', started, 'finished', finished, (SELECT CASE WHEN sample_parts > 1 THEN 'part'"
    " ELSE 'tile' END FROM jobs WHERE id=:job), CASE WHEN (SELECT tiles * sample_parts FROM jobs"
    " WHERE id=:job) > 1 THEN json_extract(frames, '$[0]') >> :shift END) AS b " + _BATCH_ROWS + ")"
)
_NODES_JSON = (
    "SELECT json_group_object(node, n) FROM (SELECT node, SUM(done_count) AS n FROM batches"
    " WHERE job=:job AND node IS NOT NULL GROUP BY node)"
)
# A tiled job's units (farm_common/tiles.py) give their frame and region.
_FAILED_JSON = (
    "SELECT json_group_array(json_object('frame', frame & :mask, 'tile', frame >> :shift,"
    " 'error', error, 'nodes', json(nodes_failed))) FROM (SELECT frame, error, nodes_failed"
    " FROM frames WHERE job=:job AND state='failed' ORDER BY idx LIMIT :limit)"
)


def _batches(text: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(text)
    for row in rows:
        row["frames"] = row.pop("spec")
    return rows


def _failed(text: str, pieces: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(text)
    if pieces == 1:
        for row in rows:
            del row["tile"]
    return rows


_UNIT_KEYS = {"mask": FRAME_MASK, "shift": TILE_SHIFT}


@dataclass
class _Frame:
    """A tiled job's frame, from its units."""

    frame: int
    tiles: int
    done: int = 0
    failed: int = 0
    rendering: int = 0
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None
    nodes: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.failed:
            return "failed"
        if self.done == self.tiles:
            return "done"
        return "rendering" if self.rendering or self.done else "pending"

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"frame": self.frame, "state": self.state}
        entry.update(tiles=self.tiles, tiles_done=self.done, attempts=self.attempts)
        if self.state == "done":
            entry["seconds"] = round(self.seconds, 3)  # render time of its regions, all told
        if self.error:
            entry["error"] = self.error
        if self.nodes:
            entry["nodes"] = self.nodes
        return entry


class Queries:
    _db: sqlite3.Connection

    def get_job(self, job_id: str) -> Job | None:
        row = self._db.execute(_JOB_SELECT + " WHERE jobs.id=?", (job_id,)).fetchone()
        return Job(**dict(row)) if row else None

    def list_jobs(self, limit: int = 200) -> list[Job]:
        rows = self._db.execute(_JOB_SELECT + " ORDER BY jobs.seq DESC LIMIT ?", (limit,))
        return [Job(**dict(r)) for r in rows]

    def job_states(self, job_ids: list[str]) -> dict[str, str]:
        """Each of the jobs' state (a job that is not there is left out)."""
        marks = ",".join("?" * len(job_ids))
        rows = self._db.execute(f"SELECT id, state FROM jobs WHERE id IN ({marks})", job_ids)
        return {r["id"]: r["state"] for r in rows}

    def count_unfinished_jobs(self) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')"
        ).fetchone()
        return int(row[0])

    def count_jobs_by_state(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return {r[0]: r[1] for r in rows}

    def job_view(self, job_id: str) -> tuple[Job, str, dict[str, int], list[dict[str, Any]]] | None:
        """What GET /render/{id} shows: the job, its batches as the API's JSON array (text),
        `job_nodes` and `failed_frames`.

        One statement, one row, built by SQLite: the sqlite3 module lets go of the GIL for each
        row it steps through, and while the scheduler's thread is busy every such step waits
        for the GIL again (1,150 batch rows took 56 ms at the median under benchmarks/scale,
        against 3 ms in an idle process). The batch list, the bulk of a big job's answer, stays
        text: parsing it and encoding it again cost more than the query (views.job_detail_body).
        """
        row = self._db.execute(
            f"SELECT ({_API_BATCHES_JSON}) AS batches_json, ({_NODES_JSON}) AS nodes_json,"
            f" ({_FAILED_JSON}) AS failed_json, jobs.*, scenes.name AS scene_name"
            " FROM jobs LEFT JOIN scenes ON scenes.sha = jobs.scene_sha WHERE jobs.id=:job",
            {"job": job_id, "limit": 100, **_UNIT_KEYS},
        ).fetchone()
        if row is None:
            return None
        fields = dict(row)
        batches = fields.pop("batches_json")
        nodes = json.loads(fields.pop("nodes_json"))
        failed = _failed(fields.pop("failed_json"), fields["tiles"] * fields["sample_parts"])
        return Job(**fields), batches, nodes, failed

    def job_batches(self, job_id: str) -> list[dict[str, Any]]:
        """A job's batches, their frames as a compact spec ("1-8,10"): O(batches) to read."""
        (text,) = self._db.execute(_BATCHES_JSON, {"job": job_id}).fetchone()
        return _batches(text)

    def job_nodes(self, job_id: str) -> dict[str, int]:
        """Frames collected per node."""
        (text,) = self._db.execute(_NODES_JSON, {"job": job_id}).fetchone()
        nodes: dict[str, int] = json.loads(text)
        return nodes

    def failed_frames(self, job_id: str, limit: int = 100, pieces: int = 1) -> list[dict[str, Any]]:
        (text,) = self._db.execute(
            _FAILED_JSON, {"job": job_id, "limit": limit, **_UNIT_KEYS}
        ).fetchone()
        return _failed(text, pieces)

    def _tiled_frames(
        self, job_id: str, tiles: int, frame: int | None = None, piece: str = "region"
    ) -> list[_Frame]:
        """A tiled job's frames (or the one `frame`), each from its units, in the job's order;
        `piece` names a unit in errors (a region, a part)."""
        query = "SELECT frame, state, node, attempts, error, seconds FROM frames WHERE job=?"
        args: tuple[Any, ...] = (job_id,)
        if frame is not None:
            query += f" AND frame IN ({','.join('?' * tiles)})"
            args += tuple(unit(frame, t) for t in range(tiles))
        frames: dict[int, _Frame] = {}
        for row in self._db.execute(query + " ORDER BY idx", args):
            number = unit_frame(row["frame"])
            one = frames.get(number)
            if one is None:
                one = frames[number] = _Frame(number, tiles)
            state = row["state"]
            if state == "done":
                one.done += 1
                one.seconds += row["seconds"] or 0.0
            elif state == "failed":
                one.failed += 1
                if one.error is None:
                    one.error = f"{piece} {unit_tile(row['frame'])}: {row['error']}"
            elif state == "rendering":
                one.rendering += 1
            one.attempts = max(one.attempts, row["attempts"])
            if row["node"] and row["node"] not in one.nodes:
                one.nodes.append(row["node"])
        return list(frames.values())  # in the order of the frame spec, as units are queued

    def frame_tiles(
        self, job_id: str, frame: int, tiles: int
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """A tiled job's frame: its state (None: no such frame), and region by region its
        state, node and render seconds."""
        marks = ",".join("?" * tiles)
        rows = self._db.execute(
            "SELECT frame, state, node, seconds FROM frames WHERE job=? AND frame IN"
            f" ({marks}) ORDER BY frame",
            (job_id, *(unit(frame, t) for t in range(tiles))),
        ).fetchall()
        if not rows:
            return None, []
        states = [r["state"] for r in rows]
        whole = _Frame(
            frame, tiles, done=states.count("done"), failed=states.count("failed"),
            rendering=states.count("rendering"),
        )  # fmt: skip
        entries = [
            {"tile": unit_tile(r["frame"]), "state": r["state"],
             **{k: r[k] for k in ("node", "seconds") if r[k] is not None}}
            for r in rows
        ]  # fmt: skip
        return whole.state, entries

    def tiled_counts(self, job_id: str, tiles: int) -> dict[str, int]:
        """A tiled job's frames done (every region in, stitched), failed (a region failed
        for good) and rendering (some regions in or under way)."""
        counts = {"done": 0, "failed": 0, "rendering": 0}
        rows = self._db.execute(
            "SELECT SUM(state='done'), SUM(state='failed'), SUM(state='rendering') FROM frames"
            " WHERE job=? AND state!='pending' GROUP BY frame & ?",
            (job_id, FRAME_MASK),
        )
        for done, failed, rendering in rows:
            one = _Frame(0, tiles, done=done, failed=failed, rendering=rendering)
            counts[one.state] += 1
        return counts

    def frame_state(self, job_id: str, frame: int, tiles: int = 1) -> str | None:
        if tiles > 1:
            found = self._tiled_frames(job_id, tiles, frame)
            return found[0].state if found else None
        row = self._db.execute(
            "SELECT state FROM frames WHERE job=? AND frame=?", (job_id, frame)
        ).fetchone()
        return row["state"] if row else None

    def frame_states(self, job_id: str, tiles: int = 1) -> tuple[list[int], list[str]]:
        if tiles > 1:
            frames = self._tiled_frames(job_id, tiles)
            return [f.frame for f in frames], [f.state for f in frames]
        rows = self._db.execute(
            "SELECT frame, state FROM frames WHERE job=? ORDER BY idx", (job_id,)
        ).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def frame_list(
        self, job_id: str, state: str | None, tiles: int = 1, piece: str = "region"
    ) -> list[dict[str, Any]]:
        if tiles > 1:
            frames = self._tiled_frames(job_id, tiles, piece=piece)
            return [f.entry() for f in frames if state is None or f.state == state]
        query = "SELECT frame, state, node, attempts, error, seconds FROM frames WHERE job=?"
        args: tuple[Any, ...] = (job_id,)
        if state:
            query += " AND state=?"
            args += (state,)
        rows = self._db.execute(query + " ORDER BY idx", args)
        return [{k: v for k, v in dict(r).items() if v is not None} for r in rows]

    def done_frames(self, job_id: str, tiles: int = 1) -> list[int]:
        """The frames collected (of a tiled job: every region in, so stitched), in order."""
        if tiles > 1:
            rows = self._db.execute(
                "SELECT frame & ? FROM frames WHERE job=? AND state='done' GROUP BY frame & ?"
                " HAVING COUNT(*)=? ORDER BY 1",
                (FRAME_MASK, job_id, FRAME_MASK, tiles),
            )
            return [r[0] for r in rows]
        rows = self._db.execute(
            "SELECT frame FROM frames WHERE job=? AND state='done' ORDER BY idx", (job_id,)
        )
        return [r[0] for r in rows]
