from pathlib import Path

from orchestrator.store.db import Store


def make_job(store: Store, frames: list[int], batch_size: int = 2):  # type: ignore[no-untyped-def]
    return store.create_job(
        scene="demo.blend", scene_sha="ab" * 32, frames_spec="x", frames=frames, fmt="PNG",
        priority=0, batch_size=batch_size, video=False, now=100.0,
    )  # fmt: skip


def test_counters_follow_dispatch_collect_and_failure(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job, batches = make_job(store, [1, 2, 3, 4])
    assert [b.frames for b in batches] == [[1, 2], [3, 4]]
    store.dispatch_batch(batches[0], "http://a", 101.0)
    j = store.get_job(job.id)
    assert j and (j.state, j.rendering, j.started) == ("running", 2, 101.0)
    assert store.collect_frame(job.id, 1, batches[0].id, 0.5)
    assert not store.collect_frame(job.id, 1, batches[0].id, 0.5)  # never twice
    settled = store.settle_batch(batches[0].id, "failed", {2: "Error: boom"}, {"http://a"}, 3, 102)
    assert [b.frames for b in settled.requeued] == [[2]]
    assert settled.requeued[0].avoid == {"http://a"}
    assert settled.retried == 1 and settled.failed == []
    j = store.get_job(job.id)
    assert j and (j.done, j.failed, j.rendering) == (1, 0, 0)
    assert store.job_nodes(job.id) == {"http://a": 1}


def test_frame_failed_on_three_nodes_fails_and_job_ends_failed(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job, (batch,) = make_job(store, [7], batch_size=5)
    live = {"a", "b", "c"}
    for node in ("a", "b", "c"):
        store.dispatch_batch(batch, node, 1.0)
        settled = store.settle_batch(batch.id, "failed", {7: f"Error on {node}"}, live, 3, 2.0)
        if node != "c":
            (batch,) = settled.requeued
    assert settled.failed == [7] and settled.requeued == []
    assert settled.job_state == "failed"
    assert store.failed_frames(job.id) == [
        {"frame": 7, "error": "Error on c", "nodes": ["a", "b", "c"]}
    ]


def test_collected_frame_is_not_owned_by_a_requeued_batch(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job, (batch,) = make_job(store, [1, 2], batch_size=5)
    store.dispatch_batch(batch, "a", 1.0)
    (again,) = store.settle_batch(batch.id, "lost", {}, {"a"}, 3, 2.0).requeued
    assert not store.collect_frame(job.id, 1, batch.id, None)  # the lost batch lost its claim
    store.dispatch_batch(again, "b", 3.0)
    assert store.collect_frame(job.id, 1, again.id, None)
    assert store.collect_frame(job.id, 2, again.id, None)
    assert store.settle_batch(again.id, "done", {}, {"b"}, 3, 4.0).job_state == "completed"


def test_restart_requeues_in_flight_frames_and_keeps_collected_ones(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    job, batches = make_job(store, [1, 2, 3, 4, 5])
    store.dispatch_batch(batches[0], "a", 1.0)
    store.set_node_job(batches[0].id, "nj1")
    store.collect_frame(job.id, 1, batches[0].id, None)
    store.dispatch_batch(batches[1], "b", 1.0)  # frame 3 written but not recorded yet
    store.close()

    store = Store(path)
    queue, orphans = store.recover(lambda job_id, tiles: {3})
    assert orphans == [("a", "nj1")]
    assert [b.frames for b in queue] == [[2, 4], [5]]
    j = store.get_job(job.id)
    assert j and (j.done, j.rendering, j.state) == (2, 0, "running")
    assert store.done_frames(job.id) == [1, 3]


def test_cancel_returns_running_node_jobs(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job, batches = make_job(store, [1, 2, 3])
    store.dispatch_batch(batches[0], "a", 1.0)
    store.set_node_job(batches[0].id, "nj")
    assert store.cancel_job(job.id, 2.0) == [("a", "nj")]
    assert store.cancel_job(job.id, 2.0) == []
    j = store.get_job(job.id)
    assert j and j.state == "cancelled"
    assert store.settle_batch(batches[0].id, "cancelled", {}, {"a"}, 3, 3.0).requeued == []


def test_large_job_status_reads_counters(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job, batches = make_job(store, list(range(1, 100_001)), batch_size=25)
    assert len(batches) == 4000
    j = store.get_job(job.id)
    assert j and j.total == 100_000 and j.done == 0


def test_collect_frames_records_a_poll_in_one_go_and_only_what_the_batch_owns(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job, (batch,) = make_job(store, [1, 2, 3, 4], batch_size=5)
    store.dispatch_batch(batch, "a", 1.0)
    assert store.collect_frames(job.id, batch.id, [(1, 0.5), (2, None)]) == [1, 2]
    assert store.collect_frames(job.id, batch.id, [(2, 0.5), (3, 0.25)]) == [3]  # 2: never twice
    assert store.collect_frames(job.id, "another-batch", [(4, 0.5)]) == []
    assert store.collect_frames(job.id, batch.id, []) == []
    j = store.get_job(job.id)
    assert j and (j.done, j.rendering) == (3, 1)
    assert store.done_frames(job.id) == [1, 2, 3]
    (again,) = store.settle_batch(batch.id, "lost", {}, {"a"}, 3, 2.0).requeued
    assert again.frames == [4]


def test_a_finished_job_lists_no_running_batch(tmp_path: Path) -> None:
    """Two slots collect their last frames; the first to settle ends the job: the other
    batch, every frame collected but not settled yet, is shown done, not running."""
    store = Store(tmp_path / "db.sqlite3")
    job, (first, second) = make_job(store, [1, 2, 3, 4])
    store.dispatch_batch(first, "http://a", 101.0)
    store.dispatch_batch(second, "http://b", 101.0)
    for frame, batch in ((1, first), (2, first), (3, second), (4, second)):
        assert store.collect_frame(job.id, frame, batch.id, 0.5)
    settled = store.settle_batch(first.id, "done", {}, {"http://a", "http://b"}, 3, 102.0)
    assert settled.job_state == "completed"
    assert [b["state"] for b in store.job_batches(job.id)] == ["done", "done"]


def test_queued_batches_are_what_the_scheduler_would_have_been_handed(tmp_path: Path) -> None:
    # The scheduler's process queues a job the API's process wrote (links.ProcessLink).
    store = Store(tmp_path / "db.sqlite3")
    job, batches = make_job(store, [1, 2, 3, 4, 5, 6])
    assert store.queued_batches(job.id) == batches
    store.dispatch_batch(batches[0], "http://a", 101.0)
    settled = store.settle_batch(batches[0].id, "failed", {2: "Error: boom"}, {"http://a"}, 3, 102)
    assert store.queued_batches(job.id) == [*batches[1:], *settled.requeued]
    # Frame 2 failed there, frame 1 was cut short: only frame 2 stays away from http://a.
    assert {tuple(b.frames): b.avoid for b in settled.requeued} == {(1,): set(), (2,): {"http://a"}}
    assert store.queued_batches("0" * 12) == []


def test_dispatch_finds_its_frames_by_key_not_by_walking_the_pending_ones(tmp_path: Path) -> None:
    # Walking the (job, state) index cost 9 ms a batch at 100,000 frames: the opening burst's
    # bottleneck. Checked on the statement as it ran, with its values bound.
    store = Store(tmp_path / "db.sqlite3")
    _, batches = make_job(store, list(range(1, 201)), batch_size=25)
    ran: list[str] = []
    store._db.set_trace_callback(ran.append)
    try:
        assert store.dispatch_batch(batches[3], "a", 1.0)
    finally:
        store._db.set_trace_callback(None)
    (update,) = [s for s in ran if s.startswith("UPDATE frames")]
    plan = " ".join(r[3] for r in store._db.execute("EXPLAIN QUERY PLAN " + update))
    assert "frames_state" not in plan and "(job=? AND frame=?)" in plan, plan
    assert store.frame_state(batches[3].job, 76) == "rendering"


def test_frames_no_node_will_render_fail_and_the_job_ends_when_its_running_batch_does(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job, batches = make_job(store, [1, 2, 3, 4, 5, 6])
    store.dispatch_batch(batches[0], "a", 1.0)
    count, state = store.fail_waiting_frames(job.id, "Error: refused", ["a", "b"], 2.0)
    assert (count, state) == (4, None)  # frames 1-2 are still rendering on a
    assert store.queued_batches(job.id) == []
    j = store.get_job(job.id)
    assert j and (j.failed, j.rendering, j.state) == (4, 2, "running")
    failed = store.failed_frames(job.id)
    assert [f["frame"] for f in failed] == [3, 4, 5, 6]
    assert failed[0] == {"frame": 3, "error": "Error: refused", "nodes": ["a", "b"]}
    # The running batch ends refused too: its frames wait again, and fail the same way.
    settled = store.settle_batch(batches[0].id, "failed", {1: "Error: refused"}, set(), 3, 3.0)
    assert [b.frames for b in settled.requeued] == [[1], [2]] and settled.job_state is None
    assert store.fail_waiting_frames(job.id, "Error: refused", ["a", "b"], 4.0) == (2, "failed")
    j = store.get_job(job.id)
    assert j and (j.failed, j.rendering, j.done, j.finished) == (6, 0, 0, 4.0)
