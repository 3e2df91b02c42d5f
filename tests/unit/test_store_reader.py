"""Status reads run on their own connection and thread, and see what the writer committed."""

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from orchestrator.store.db import Store


def test_reader_sees_committed_writes_and_cannot_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    try:
        job, batches = store.create_job(
            scene="demo.blend", scene_sha="ab" * 32, frames_spec="1-4", frames=[1, 2, 3, 4],
            fmt="PNG", priority=0, batch_size=2, video=False, now=100.0,
        )  # fmt: skip
        store.dispatch_batch(batches[0], "http://a", 101.0)
        assert store.collect_frame(job.id, 1, batches[0].id, 0.5)

        def read(reader: Store) -> tuple[int, list[int]]:
            seen = reader.get_job(job.id)
            assert seen is not None
            return seen.done, [b["done_count"] for b in reader.job_batches(job.id)]

        assert asyncio.run(store.read(read)) == (1, [1, 0])

        def write(reader: Store) -> None:
            reader.add_scene("cd" * 32, tmp_path / "x.blend", "x", 1, 1.0)

        with pytest.raises(sqlite3.OperationalError):
            asyncio.run(store.read(write))
    finally:
        store.close()


def test_job_view_is_the_job_with_its_batches_nodes_and_failed_frames_in_order(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "db.sqlite3")
    try:
        job, batches = store.create_job(
            scene="demo.blend", scene_sha="ab" * 32, frames_spec="1-12", frames=list(range(1, 13)),
            fmt="PNG", priority=0, batch_size=3, video=False, now=100.0,
        )  # fmt: skip
        # Dispatched out of order, so insertion order is not the batches' order.
        store.dispatch_batch(batches[2], "http://b", 101.0)
        store.dispatch_batch(batches[0], "http://a", 102.0)
        for frame in (1, 2, 3):
            assert store.collect_frame(job.id, frame, batches[0].id, 0.5)
        assert store.collect_frame(job.id, 7, batches[2].id, 0.5)
        errors = {9: "Error: CUDA out of memory", 8: "Error: no camera"}
        store.settle_batch(batches[2].id, "failed", errors, {"http://b"}, 1, 103.0)

        view = store.job_view(job.id)
        assert view is not None
        seen, batches_json, nodes, failed = view
        assert seen == store.get_job(job.id)
        assert (seen.done, seen.failed) == (4, 2)
        batch_rows = json.loads(batches_json)
        assert [b["id"] for b in batch_rows] == [b.id for b in batches]
        assert [b["frames"] for b in batch_rows] == ["1-3", "4-6", "7-9", "10-12"]
        assert [b["done"] for b in batch_rows] == [3, 0, 1, 0]
        # The API's keys and values, the same as the rows the store reads.
        rows = store.job_batches(job.id)
        assert batch_rows == [
            {"id": r["id"], "frames": r["frames"], "node": r["node"], "state": r["state"],
             "attempts": r["attempts"], "done": r["done_count"], "started": r["started"],
             "finished": r["finished"], "tile": None}
            for r in rows
        ]  # fmt: skip
        assert [b["state"] for b in batch_rows] == ["running", "queued", "failed", "queued"]
        assert batch_rows[0]["started"] == 102.0 and batch_rows[2]["finished"] == 103.0
        assert nodes == {"http://a": 3, "http://b": 1} == store.job_nodes(job.id)
        assert failed == [
            {"frame": 8, "error": "Error: no camera", "nodes": ["http://b"]},
            {"frame": 9, "error": "Error: CUDA out of memory", "nodes": ["http://b"]},
        ]
        assert failed == store.failed_frames(job.id)
        assert store.job_view("0" * 12) is None
    finally:
        store.close()
