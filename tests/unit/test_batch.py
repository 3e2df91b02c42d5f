import pytest

from render_node.batch import DONE, FAILED, PENDING, RENDERING, Batch, Watchdog


def test_frame_goes_pending_rendering_done_with_seconds() -> None:
    batch = Batch([1, 2])
    assert batch.frames[1].state == PENDING
    batch.start(1, now=10.0)
    assert batch.frames[1].state == RENDERING
    batch.saved(1, now=12.5, problem=None)
    assert batch.frames[1].state == DONE
    assert batch.frames[1].seconds == 2.5
    assert batch.unfinished() == [2]


def test_saved_without_a_file_fails_the_frame_with_the_problem() -> None:
    batch = Batch([1])
    batch.start(1, 0.0)
    batch.saved(1, 1.0, problem="no file at /o/frame_00001.png")
    assert batch.frames[1].state == FAILED
    assert batch.frames[1].error == "no file at /o/frame_00001.png"


def test_error_then_saved_fails_the_frame_with_the_error() -> None:
    batch = Batch([1])
    batch.start(1, 0.0)
    batch.error(1, "CUDA error: launch failed")
    batch.saved(1, 1.0, problem=None)
    assert batch.frames[1].state == FAILED
    assert batch.frames[1].error == "CUDA error: launch failed"


def test_moving_on_without_saving_fails_the_previous_frame() -> None:
    batch = Batch([1, 2])
    batch.start(1, 0.0)
    batch.error(1, "CUDA error: out of memory")
    batch.start(2, 1.0)
    assert batch.frames[1].state == FAILED
    assert batch.frames[1].error == "CUDA error: out of memory"
    assert batch.frames[2].state == RENDERING


def test_frames_outside_the_batch_are_ignored() -> None:
    batch = Batch([1])
    batch.start(99, 0.0)
    batch.saved(99, 1.0, None)
    assert batch.counts() == {PENDING: 1, RENDERING: 0, DONE: 0, FAILED: 0}


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], 0.25),  # frame 1 done of 4, frame 2 just started
        ([(2, 8)], 0.25 + 0.25 / 4),
        ([(8, 8)], 0.25 + 0.99 / 4),  # a hint never completes a frame
        ([(6, 8), (2, 4)], 0.25 + 0.75 / 4),  # the total changed: never goes backwards
    ],
)
def test_progress_counts_done_frames_plus_sample_hint(
    samples: list[tuple[int, int]], expected: float
) -> None:
    batch = Batch([1, 2, 3, 4])
    batch.start(1, 0.0)
    batch.saved(1, 1.0, None)
    batch.start(2, 1.0)
    for done, total in samples:
        batch.sample(2, done, total)
    assert batch.progress() == pytest.approx(expected, abs=1e-4)


def test_progress_of_failed_frames_does_not_count() -> None:
    batch = Batch([1, 2])
    batch.start(1, 0.0)
    batch.fail(1, "boom", 1.0)
    assert batch.progress() == 0.0


def test_watchdog_expires_only_after_timeout_without_touch() -> None:
    dog = Watchdog(5.0, now=100.0)
    assert not dog.expired(104.9)
    dog.touch(104.0)
    assert not dog.expired(108.9)
    assert dog.expired(109.0)


def test_watchdog_without_timeout_never_expires() -> None:
    assert not Watchdog(None, now=0.0).expired(1e9)
