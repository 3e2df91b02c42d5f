"""Status reads run on their own connection and thread, and see what the writer committed."""

import asyncio
import sqlite3
from pathlib import Path

import pytest

from orchestrator.store import Store


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
