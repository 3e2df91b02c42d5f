"""Requeue in the store: which frames go back, what starts over, what the job becomes."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.api.models import RequeueRequest
from orchestrator.store.db import Store
from tests.unit.test_store import make_job


def failed_job(store: Store) -> str:
    """Frames 1-4 of a job: 1, 2 and 4 done, 3 failed on nodes a, b and c."""
    job, (batch,) = make_job(store, [1, 2, 3, 4], batch_size=4)
    live = {"a", "b", "c"}
    for node in ("a", "b", "c"):
        store.dispatch_batch(batch, node, 1.0)
        for frame in (1, 2, 4):
            store.collect_frame(job.id, frame, batch.id, 0.5)
        settled = store.settle_batch(batch.id, "failed", {3: f"Error on {node}"}, live, 3, 2.0)
        if settled.requeued:
            (batch,) = settled.requeued
    assert settled.job_state == "failed"
    return job.id


def test_failed_frames_go_back_with_their_attempts_and_bans_cleared(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job_id = failed_job(store)
    done = store.requeue(job_id, None, "failed", 10.0)
    assert done is not None
    assert [b.frames for b in done.batches] == [[3]] and done.batches[0].avoid == set()
    assert (done.were_done, done.frames, done.frame_numbers) == ([], "3", {3})
    job = store.get_job(job_id)
    assert job and (job.state, job.done, job.failed, job.finished) == ("queued", 3, 0, None)
    (entry,) = store.frame_list(job_id, "pending")
    assert entry == {"frame": 3, "state": "pending", "attempts": 0}  # no error, no node
    assert store.failed_frames(job_id) == []
    assert [b.id for b in store.queued_batches(job_id)] == [done.batches[0].id]
    assert store.requeue_history(job_id) == [
        {"at": 10.0, "asked": "failed", "frames": "3", "count": 1}
    ]
    # Nothing failed now: a second `failed` requeue sends nothing back.
    assert store.requeue(job_id, None, "failed", 11.0).batches == []  # type: ignore[union-attr]


def test_done_frames_asked_for_go_back_and_a_finished_job_is_queued(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job_id = failed_job(store)
    done = store.requeue(job_id, [2, 3], "2-3", 10.0)
    assert done is not None and done.were_done == [2] and done.frames == "2-3"
    job = store.get_job(job_id)
    assert job and (job.state, job.done, job.failed) == ("queued", 2, 0)
    assert store.requeue("0123456789ab", None, "failed", 1.0) is None


def test_a_cancelled_job_resumes_with_what_it_never_rendered(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job, batches = make_job(store, [1, 2, 3, 4, 5], batch_size=2)
    store.dispatch_batch(batches[0], "a", 1.0)
    store.collect_frame(job.id, 1, batches[0].id, 0.5)
    store.cancel_job(job.id, 2.0)
    done = store.requeue(job.id, [1], "1", 3.0)  # frame 1 again, and the rest resumes
    assert done is not None
    assert sorted(f for b in done.batches for f in b.frames) == [1, 2, 3, 4, 5]
    assert done.were_done == [1]


def test_a_running_jobs_queued_frames_are_not_queued_twice(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    job, batches = make_job(store, [1, 2, 3, 4], batch_size=2)
    store.dispatch_batch(batches[0], "a", 1.0)
    store.collect_frame(job.id, 1, batches[0].id, 0.5)
    done = store.requeue(job.id, [1, 3], "1,3", 2.0)
    assert done is not None and [b.frames for b in done.batches] == [[1]]  # 3 is queued already
    job_after = store.get_job(job.id)
    assert job_after and job_after.state == "running"


def test_a_requeue_asks_for_frames_or_failed_ones() -> None:
    assert RequeueRequest(frames="1-3").frames == "1-3"
    assert RequeueRequest(failed=True).failed
    for wrong in ({}, {"frames": "1", "failed": True}, {"failed": False}):
        with pytest.raises(ValidationError, match="give either"):
            RequeueRequest(**wrong)
