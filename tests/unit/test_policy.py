import pytest

from farm_common.blendfile import opens
from farm_common.protocol import FrameStatus
from orchestrator.scheduling.policy import (
    blender_matches,
    effective_bans,
    eta_seconds,
    failure_counts,
    node_may_take,
    poll_backoff,
    poll_base,
    saved_version,
)
from orchestrator.store.transitions import final_job_state, frame_gives_up


@pytest.mark.parametrize(
    ("nodes_failed", "attempts", "live", "gives_up"),
    [
        ({"a"}, 1, {"a", "b", "c"}, False),
        ({"a", "b"}, 2, {"a", "b", "c"}, False),
        ({"a", "b", "c"}, 3, {"a", "b", "c"}, True),  # three different nodes
        ({"a"}, 3, {"a", "b", "c"}, False),  # same node thrice while others could try
        ({"a"}, 3, {"a"}, True),  # a one-node farm cannot retry forever
        ({"a", "b"}, 2, {"a", "b"}, False),
        ({"a", "b"}, 3, {"a", "b"}, True),
    ],
)
def test_frame_gives_up_after_three_different_nodes(
    nodes_failed: set[str], attempts: int, live: set[str], gives_up: bool
) -> None:
    assert frame_gives_up(nodes_failed, attempts, live, 3) is gives_up


@pytest.mark.parametrize(
    ("node", "avoid", "live", "banned", "ok"),
    [
        ("a", set(), {"a", "b"}, set(), True),
        ("a", {"a"}, {"a", "b"}, set(), False),  # b has not tried these frames yet
        ("b", {"a"}, {"a", "b"}, set(), True),
        ("a", {"a", "b"}, {"a", "b"}, set(), True),  # nobody else left to try
        ("a", {"a"}, {"a", "b"}, {"b"}, True),  # b is banned from the job
        ("a", set(), {"a"}, {"a"}, False),
    ],
)
def test_node_may_take_prefers_nodes_that_did_not_fail_the_frames(
    node: str, avoid: set[str], live: set[str], banned: set[str], ok: bool
) -> None:
    assert node_may_take(node, avoid, live, banned) is ok


@pytest.mark.parametrize(
    ("total", "done", "failed", "state"),
    [(3, 1, 0, None), (3, 3, 0, "completed"), (3, 2, 1, "failed"), (3, 1, 1, None)],
)
def test_final_job_state(total: int, done: int, failed: int, state: str | None) -> None:
    assert final_job_state(total, done, failed) == state


def test_eta_needs_a_done_frame() -> None:
    assert eta_seconds(10.0, 0, 5) is None
    assert eta_seconds(10.0, 5, 5) == 10.0


def test_poll_backoff_slows_down_while_nothing_happens_and_resets_on_progress() -> None:
    interval = 0.3
    for _ in range(10):
        interval = poll_backoff(interval, False, 0.3)
    assert interval == 2.0
    assert poll_backoff(interval, True, 0.3) == 0.3
    assert poll_backoff(0.3, False, 0.3) == 0.3 * 1.5


def test_many_running_batches_share_a_farm_wide_poll_budget() -> None:
    assert poll_base(0.3, 3, 100.0) == 0.3  # a home lab polls at the base rate
    assert poll_base(0.3, 30, 100.0) == 0.3
    assert poll_base(0.3, 200, 100.0) == 2.0  # 200 batches: 100 polls a second in all
    # and a batch that stops making progress backs off from there, not from the base rate
    assert poll_backoff(2.0, False, poll_base(0.3, 400, 100.0)) == 4.0


def test_bans_redirect_work_but_never_stall_a_job() -> None:
    assert effective_bans({"a"}, {"a", "b"}) == {"a"}
    assert effective_bans({"a", "b"}, {"a", "b"}) == set()
    assert effective_bans({"a"}, set()) == {"a"}


@pytest.mark.parametrize(
    ("info", "batch_started", "counts"),
    [
        ({"frame": 5, "state": "failed", "seconds": 1.2, "error": "crash"}, True, True),
        ({"frame": 6, "state": "failed", "error": "before rendering"}, True, False),
        ({"frame": 1, "state": "failed", "error": "Cannot read file"}, False, True),
    ],
)
def test_only_frames_blender_got_to_are_charged_with_a_failure(
    info: dict[str, object], batch_started: bool, counts: bool
) -> None:
    assert failure_counts(FrameStatus.model_validate(info), batch_started) is counts


@pytest.mark.parametrize(
    ("version", "wanted", "takes"),
    [
        ("4.2.1", None, True),
        (None, None, True),
        ("4.2.1", "4.2", True),
        ("4.2.1", "4.2.1", True),
        ("4.2", "4.2", True),
        ("4.2.10", "4.2.1", False),
        ("4.20.0", "4.2", False),
        ("3.6.5", "4.2", False),
        ("4.2.0 LTS", "4.2.0", True),
        (None, "4.2", False),
        ("4", "4.2", False),
    ],
)
def test_a_job_pinned_to_a_blender_version_takes_its_releases_only(
    version: str | None, wanted: str | None, takes: bool
) -> None:
    assert blender_matches(version, wanted) is takes


def test_a_jobs_saved_by_reads_as_a_version() -> None:
    assert saved_version("5.0") == (5, 0)
    assert saved_version("4.10") == (4, 10)
    assert saved_version(None) is None and saved_version("5") is None
    assert saved_version("x.y") is None


def test_an_older_blender_does_not_open_a_newer_file() -> None:
    assert opens("5.0.1", (5, 0)) and opens("4.2.3", (3, 4)) and opens("4.10.0", (4, 2))
    assert not opens("3.4.1", (5, 0)) and not opens("4.2.0", (4, 10))
    assert opens(None, (5, 0)) and opens("3.4.1", None) and opens("weird", (5, 0))
