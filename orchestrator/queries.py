"""Read-side of the store: jobs, their batches and frames as the API and dashboard show them.

Mixed into `Store`; every query reads counters or one job's batches, never all frames, except
the per-frame listings that are asked for explicitly.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from render_node.frames import compact_frames


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


_JOB_SELECT = (
    "SELECT jobs.*, scenes.name AS scene_name FROM jobs"
    " LEFT JOIN scenes ON scenes.sha = jobs.scene_sha"
)


class Queries:
    _db: sqlite3.Connection

    def get_job(self, job_id: str) -> Job | None:
        row = self._db.execute(_JOB_SELECT + " WHERE jobs.id=?", (job_id,)).fetchone()
        return Job(**dict(row)) if row else None

    def list_jobs(self, limit: int = 200) -> list[Job]:
        rows = self._db.execute(_JOB_SELECT + " ORDER BY jobs.seq DESC LIMIT ?", (limit,))
        return [Job(**dict(r)) for r in rows]

    def count_unfinished_jobs(self) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')"
        ).fetchone()
        return int(row[0])

    def count_jobs_by_state(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return {r[0]: r[1] for r in rows}

    def job_batches(self, job_id: str) -> list[dict[str, Any]]:
        """A job's batches, their frames as a compact spec ("1-8,10"): O(batches) to read."""
        rows = self._db.execute(
            "SELECT id, spec, frames, node, node_job_id, state, attempts, done_count, started,"
            " finished FROM batches WHERE job=? ORDER BY seq",
            (job_id,),
        )
        result = []
        for r in rows:
            row = dict(r)
            spec = row.pop("spec")
            row["frames"] = spec if spec is not None else compact_frames(json.loads(r["frames"]))
            result.append(row)
        return result

    def job_nodes(self, job_id: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT node, SUM(done_count) FROM batches WHERE job=? AND node IS NOT NULL"
            " GROUP BY node",
            (job_id,),
        )
        return {r[0]: r[1] for r in rows}

    def failed_frames(self, job_id: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT frame, error, nodes_failed FROM frames WHERE job=? AND state='failed'"
            " ORDER BY idx LIMIT ?",
            (job_id, limit),
        )
        return [
            {"frame": r["frame"], "error": r["error"], "nodes": json.loads(r["nodes_failed"])}
            for r in rows
        ]

    def frame_state(self, job_id: str, frame: int) -> str | None:
        row = self._db.execute(
            "SELECT state FROM frames WHERE job=? AND frame=?", (job_id, frame)
        ).fetchone()
        return row["state"] if row else None

    def frame_states(self, job_id: str) -> tuple[list[int], list[str]]:
        rows = self._db.execute(
            "SELECT frame, state FROM frames WHERE job=? ORDER BY idx", (job_id,)
        ).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def frame_list(self, job_id: str, state: str | None) -> list[dict[str, Any]]:
        query = "SELECT frame, state, node, attempts, error, seconds FROM frames WHERE job=?"
        args: tuple[Any, ...] = (job_id,)
        if state:
            query += " AND state=?"
            args += (state,)
        rows = self._db.execute(query + " ORDER BY idx", args)
        return [{k: v for k, v in dict(r).items() if v is not None} for r in rows]

    def done_frames(self, job_id: str) -> list[int]:
        rows = self._db.execute(
            "SELECT frame FROM frames WHERE job=? AND state='done' ORDER BY idx", (job_id,)
        )
        return [r[0] for r in rows]
