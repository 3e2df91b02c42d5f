"""What the scheduler knows of its slots, and how a job's queue is cut to a slot's size."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from farm_common.frames import parse_frame_spec
from orchestrator.scheduling.lanes import (
    DEFAULT_OVERHEAD,
    ROUND_TRIPS,
    SCENES_KEPT,
    LaneBook,
    SpeedBook,
)
from orchestrator.scheduling.queue import JobQueue
from orchestrator.store.db import QueuedBatch, Store

LANE = ("http://a", 0)


def test_speed_is_kept_per_node_and_scene_and_smoothed() -> None:
    book = SpeedBook()
    book.observe_frame("a", "s1", 1.0)
    assert book.seconds_per_frame("a", "s1") == 1.0
    book.observe_frame("a", "s1", 2.0)
    assert 1.0 < (book.seconds_per_frame("a", "s1") or 0) < 2.0
    assert book.seconds_per_frame("b", "s1") is None  # never seen: unknown


def test_a_new_scene_is_estimated_from_the_nodes_relative_speed() -> None:
    book = SpeedBook()
    book.observe_frame("fast", "s1", 0.2)
    book.observe_frame("slow", "s1", 0.8)
    book.observe_frame("fast", "s2", 0.4)  # s2 costs twice as much
    estimate = book.seconds_per_frame("slow", "s2")
    assert estimate is not None and 1.2 < estimate < 2.0
    assert book.seconds_per_frame("slow", "s3") is None  # nobody rendered s3 yet


def test_overhead_is_measured_start_up_plus_round_trips() -> None:
    book = SpeedBook()
    assert book.overhead("a") == DEFAULT_OVERHEAD
    book.observe_startup("a", 0.5)
    assert book.overhead("a") == pytest.approx(0.5 + ROUND_TRIPS)


def test_the_speed_book_outlives_a_restart_through_the_store(tmp_path: Path) -> None:
    book = SpeedBook()
    book.observe_frame("http://a", "s1", 2.0)
    book.observe_frame("http://b", "s1", 4.0)
    book.observe_startup("http://a", 0.0)
    book.observe_startup("http://b", 1.5)
    assert book.changes == 4
    Store(tmp_path / "db.sqlite3").save_learned("speeds", book.dump(), 1.0)
    again = SpeedBook.load(Store(tmp_path / "db.sqlite3").load_learned("speeds"))
    assert (again.frame, again.startup) == (book.frame, book.startup)
    assert (again.relative, again.base) == (book.relative, book.base)
    # Estimates for a scene only one node rendered come out the same.
    book.observe_frame("http://a", "s2", 1.0)
    again.observe_frame("http://a", "s2", 1.0)
    assert again.seconds_per_frame("http://b", "s2") == book.seconds_per_frame("http://b", "s2")
    assert again.changes == 1  # what was loaded is not a change to save again


def test_the_saved_book_keeps_the_scenes_rendered_last() -> None:
    book = SpeedBook()
    for i in range(SCENES_KEPT + 5):
        book.observe_frame("http://a", f"s{i}", 1.0)
    book.observe_frame("http://a", "s0", 1.0)  # rendered again: among the latest now
    kept = SpeedBook.load(book.dump())
    assert len(kept.base) == SCENES_KEPT
    assert "s0" in kept.base and "s1" not in kept.base and f"s{SCENES_KEPT + 4}" in kept.base
    assert {scene for _, scene in kept.frame} == set(kept.base)


def test_a_malformed_speed_book_loads_what_it_can() -> None:
    data = {
        "frame": [["http://a", "s", 1.5], ["http://b", "s", -1], ["x"], ["http://c", "s", True]],
        "startup": {"http://a": 0.0, "http://b": float("nan"), "http://c": "slow"},
        "relative": [1, 2],
    }
    book = SpeedBook.load(data)
    assert book.frame == {("http://a", "s"): 1.5}
    assert book.startup == {"http://a": 0.0} and book.relative == {}
    assert SpeedBook.load(None).frame == {} and SpeedBook.load("[]").startup == {}


def test_free_at_adds_queued_batches_to_what_the_running_one_has_left() -> None:
    lanes = LaneBook()
    assert lanes.free_at(LANE, 10.0, 1.0) == 10.0  # idle
    lanes.add(LANE, "b1", 5, 1.0, 0.5, now=10.0)
    lanes.add(LANE, "b2", 4, 1.0, 0.5, now=10.0)
    assert lanes.free_at(LANE, 10.0, 1.0) == pytest.approx(10.0 + 0.5 + 5 + 0.5 + 4)
    lanes.progress(LANE, "b1", 2, 1.0, now=12.0)  # running, 2 frames left, one of them begun
    assert lanes.free_at(LANE, 12.0, 1.0) == pytest.approx(12.0 + 1.5 + 0.5 + 4)
    # Counted from that report: 1 s later, 1 s less to go.
    assert lanes.free_at(LANE, 13.0, 1.0) == pytest.approx(12.0 + 1.5 + 0.5 + 4)
    # Past its estimate and still running: it ends no sooner than now.
    assert lanes.free_at(LANE, 20.0, 1.0) == pytest.approx(20.0 + 0.5 + 4)
    lanes.remove(LANE, "b1")  # only b2 is left, not started yet
    assert lanes.free_at(LANE, 12.0, 1.0) == pytest.approx(12.0 + 0.5 + 4)


def test_a_first_frame_that_takes_long_shows_the_lane_is_slow() -> None:
    lanes = LaneBook()
    lanes.add(LANE, "b1", 5, None, 0.5, now=10.0)
    lanes.progress(LANE, "b1", 5, None, now=13.0)  # nothing finished after 3 s
    lane = lanes.lane(LANE, None, 0.5, now=13.5)
    assert lane.seconds_per_frame is None and lane.at_least == pytest.approx(2.5)
    lanes.progress(LANE, "b1", 4, None, now=14.0)  # one done: no more bound from this
    assert lanes.lane(LANE, None, 0.5, now=14.0).at_least == 0.0


def queue_of(*parts: list[int], avoid: set[str] | None = None) -> JobQueue:
    queue = JobQueue()
    queue.add([QueuedBatch(f"b{i}", "j", list(p), set(avoid or ())) for i, p in enumerate(parts)])
    return queue


def test_take_joins_fresh_batches_up_to_the_size_and_queues_the_rest() -> None:
    queue = queue_of([1, 2, 3], [4, 5, 6], [7, 8, 9])
    cut = queue.take(queue.batches[0], 5)
    assert cut.batch.id == "b0" and cut.batch.frames == [1, 2, 3, 4, 5]
    assert cut.absorbed == ["b1"]
    assert cut.remainder is not None and cut.remainder.frames == [6]
    assert [b.frames for b in queue.batches] == [[6], [7, 8, 9]]
    assert queue.frames == 4


def test_take_splits_a_batch_smaller() -> None:
    queue = queue_of([1, 2, 3, 4])
    cut = queue.take(queue.batches[0], 1)
    assert cut.batch.frames == [1] and cut.absorbed == []
    assert [b.frames for b in queue.batches] == [[2, 3, 4]] and queue.frames == 3


def test_take_of_size_zero_is_the_batch_as_it_is() -> None:
    queue = queue_of([1, 2], [3, 4])
    cut = queue.take(queue.batches[0], 0)
    assert cut.batch.frames == [1, 2] and cut.remainder is None and queue.frames == 2


def test_retried_frames_are_never_joined_with_others() -> None:
    queue = queue_of([1, 2], avoid={"http://b"})
    queue.add([QueuedBatch("fresh", "j", [3, 4])])
    cut = queue.take(queue.batches[0], 4)
    assert cut.batch.frames == [1, 2] and cut.batch.avoid == {"http://b"}
    assert [b.id for b in queue.batches] == ["fresh"]


def test_dispatch_records_a_cut_batch_in_one_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job, batches = store.create_job(
        scene="demo.blend", scene_sha="ab" * 32, frames_spec="1-9", frames=list(range(1, 10)),
        fmt="PNG", priority=0, batch_size=3, video=False, now=100.0, adaptive=True,
    )  # fmt: skip
    assert job.adaptive == 1
    queue = JobQueue()
    queue.add(batches)
    cut = queue.take(queue.batches[0], 5)
    assert store.dispatch_batch(cut.batch, "http://a", 101.0, cut.absorbed, cut.remainder)
    rows = store.job_batches(job.id)
    # every frame in exactly one batch: 1-5 running on a, 6 and 7-9 queued
    assert sorted(f for r in rows for f in parse_frame_spec(r["frames"])) == list(range(1, 10))
    assert [(r["frames"], r["state"]) for r in rows if r["state"] == "running"] == [
        ("1-5", "running")
    ]
    j = store.get_job(job.id)
    assert j is not None and j.rendering == 5


def test_a_data_folder_from_before_adaptive_batches_still_opens(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    db.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, scene TEXT NOT NULL,"
        " scene_sha TEXT NOT NULL, frames_spec TEXT NOT NULL, format TEXT NOT NULL,"
        " priority INTEGER NOT NULL, batch_size INTEGER NOT NULL, video INTEGER NOT NULL"
        " DEFAULT 0, state TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL,"
        " error TEXT, total INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0, failed INTEGER"
        " NOT NULL DEFAULT 0, rendering INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute(
        "INSERT INTO jobs (id, seq, scene, scene_sha, frames_spec, format, priority, batch_size,"
        " state, created, total) VALUES ('old', 1, 's', 'ab', '1', 'PNG', 0, 1, 'completed', 1, 1)"
    )
    db.execute(
        "CREATE TABLE batches (id TEXT PRIMARY KEY, job TEXT NOT NULL, seq INTEGER NOT NULL,"
        " frames TEXT NOT NULL, avoid TEXT NOT NULL DEFAULT '[]', node TEXT, node_job_id TEXT,"
        " state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, done_count INTEGER NOT NULL"
        " DEFAULT 0, started REAL, finished REAL)"
    )
    db.execute(
        "INSERT INTO batches (id, job, seq, frames, state) VALUES ('b1', 'old', 1, '[1,2,3,5]',"
        " 'done')"
    )
    db.commit()
    db.close()
    store = Store(tmp_path / "db.sqlite3")
    old = store.get_job("old")
    assert old is not None and old.adaptive == 0 and old.blender_version is None
    # Batches from then get the compact spec that status reads send as it is.
    view = store.job_view("old")
    assert view is not None
    assert [b["frames"] for b in json.loads(view[1])] == ["1-3,5"]
