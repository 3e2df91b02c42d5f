"""The add-on's logic that runs without Blender: progress lines, the fields a submission sends,
the messages failures become, the job board and the worker thread. Loaded as the zip lays
them out (farm_submit.*, with farm_pack inside), without the package's bpy-importing
__init__."""

from __future__ import annotations

import importlib
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def addon() -> Iterator[types.SimpleNamespace]:
    package = types.ModuleType("farm_submit")
    package.__path__ = [str(REPO / "blender_addon" / "farm_submit"), str(REPO)]
    sys.modules["farm_submit"] = package
    try:
        yield types.SimpleNamespace(
            **{
                name: importlib.import_module(f"farm_submit.{name}")
                for name in ("board", "farm_api", "submission", "worker")
            }
        )
    finally:
        for name in [n for n in sys.modules if n == "farm_submit" or n.startswith("farm_submit.")]:
            del sys.modules[name]


@pytest.mark.parametrize(
    ("job", "line"),
    [
        ({"state": "queued", "frames": {"total": 8, "done": 0}}, "queued: 0/8 frames (0%)"),
        (
            {"state": "running", "frames": {"total": 48, "done": 12}, "eta_seconds": 190},
            "running: 12/48 frames (25%), ETA 3m 10s",
        ),
        (
            {
                "state": "running",
                "frames": {"total": 4, "done": 1, "failed": 1},
                "eta_seconds": 7300,
            },
            "running: 1/4 frames (25%), 1 failed, ETA 2h 01m",
        ),
        (
            {
                "state": "queued",
                "frames": {"total": 2, "done": 0},
                "waiting": "waiting for a node with tags gpu",
            },
            "queued: 0/2 frames (0%) (waiting for a node with tags gpu)",
        ),
        (  # a still split in regions: the percentage counts regions as they come
            {
                "state": "running",
                "frames": {"total": 1, "done": 0},
                "tiles": {"total": 16, "done": 4},
                "eta_seconds": 30,
            },
            "running: 0/1 frames (25%), ETA 30s",
        ),
        (
            {"state": "completed", "frames": {"total": 8, "done": 8}, "eta_seconds": 0},
            "completed: 8/8 frames (100%)",
        ),
    ],
)
def test_a_jobs_progress_line(addon: Any, job: dict[str, Any], line: str) -> None:
    assert addon.board.progress_line(job) == line


@pytest.mark.parametrize(
    ("start", "end", "step", "spec"),
    [(1, 250, 1, "1-250"), (1, 100, 5, "1-100x5"), (7, 7, 1, "7"), (10, 3, 1, "10")],
)
def test_the_scenes_range_as_a_frame_spec(
    addon: Any, start: int, end: int, step: int, spec: str
) -> None:
    assert addon.submission.scene_frames(start, end, step) == spec


def test_zero_and_empty_fields_leave_the_choice_to_the_farm(addon: Any) -> None:
    assert addon.submission.job_fields("1-8") == {"frames": "1-8", "priority": 0}
    assert addon.submission.job_fields(
        "1-8", batch_size=3, priority=5, tiles=4, blender_version="5.0", device="gpu"
    ) == {"frames": "1-8", "priority": 5, "batch_size": 3, "tiles": 4,
          "blender_version": "5.0", "device": "gpu"}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, ["wants a valid token", "Preferences"]),
        (403, ["refused this token", "role view", "Preferences"]),
        (409, ["refused POST /render (409)", "role view"]),
    ],
)
def test_refusals_say_what_to_fix(addon: Any, status: int, words: list[str]) -> None:
    message = addon.farm_api.refusal_message("POST", "/render", status, "role view ...")
    assert all(word in message for word in words), message


def test_a_url_without_a_scheme_is_refused_before_any_call(addon: Any) -> None:
    with pytest.raises(addon.farm_api.FarmError, match="must start with http"):
        addon.farm_api.FarmApi("farm.local:8000")


class FakeApi:
    def __init__(self) -> None:
        self.fail: Exception | None = None
        self.calls: list[str] = []

    def whoami(self) -> dict[str, Any]:
        self.calls.append("whoami")
        return {"name": "ana", "role": "submit"}

    def jobs(self) -> list[dict[str, Any]]:
        self.calls.append("jobs")
        if self.fail:
            raise self.fail
        return [{"id": f"j{n}", "created": n} for n in range(12)]

    def job(self, job_id: str) -> dict[str, Any]:
        self.calls.append(f"job {job_id}")
        return {"id": job_id, "state": "running"}


def test_the_board_keeps_the_recent_jobs_and_the_followed_one_and_says_what_failed(
    addon: Any,
) -> None:
    api = FakeApi()
    board = addon.board.JobBoard(api_factory=lambda connection: api)
    assert board.refresh() is None and api.calls == []  # no farm set: nothing asked
    board.connect(addon.board.Connection("http://farm", "t", ""))
    board.follow("j3")
    assert board.refresh() is None
    seen = board.snapshot()
    assert [j["id"] for j in seen["jobs"]] == [f"j{n}" for n in range(11, 3, -1)]  # newest 8
    assert seen["followed_job"] == {"id": "j3", "state": "running"}
    assert seen["identity"] == {"name": "ana", "role": "submit"}
    api.fail = addon.farm_api.FarmUnreachable("cannot reach the farm at http://farm")
    assert board.refresh() == "cannot reach the farm at http://farm"
    assert board.snapshot()["error"] == "cannot reach the farm at http://farm"
    assert board.snapshot()["jobs"]  # the last good answer stays on screen
    api.fail = None
    board.refresh()
    assert board.snapshot()["error"] is None
    assert api.calls.count("whoami") == 1  # asked once a connection
    board.connect(addon.board.Connection("http://other", "t", ""))
    assert board.snapshot()["jobs"] == [] and board.snapshot()["identity"] is None


def test_the_board_is_refreshed_only_while_someone_looks_or_a_job_runs(addon: Any) -> None:
    board = addon.board.JobBoard(api_factory=lambda connection: FakeApi())
    assert not board.wanted()
    board.touch()
    assert board.wanted() and not board.wanted(window=0)
    board.follow("j1")
    assert board.wanted(window=0)  # followed, not known to have ended
    board.connect(addon.board.Connection("http://farm", "", ""))
    board.refresh()
    assert board.wanted(window=0)  # running
    board._followed_job = {"state": "completed"}
    assert not board.wanted(window=0)


def test_a_task_runs_in_a_thread_and_keeps_its_result_or_its_message(addon: Any) -> None:
    release = threading.Event()

    def work(progress: Any) -> str:
        progress.say("uploading", 0.5)
        release.wait(10)
        return "job-1"

    task = addon.worker.Task("t", work).start()
    while task.progress.read() != ("uploading", 0.5):
        pass
    assert not task.done
    release.set()
    task.join(10)
    assert task.done and task.result == "job-1" and task.error is None

    def refused(progress: Any) -> None:
        raise addon.farm_api.FarmError("the farm refused this token")

    failed = addon.worker.Task("t", refused).run_here()
    assert failed.done and failed.error == "the farm refused this token"

    def bug(progress: Any) -> None:
        raise KeyError("id")

    crashed = addon.worker.Task("t", bug).run_here()
    assert crashed.error == "the add-on failed: KeyError: 'id'"
