"""How the store's rows change state, as pure rules: a job's frames cut into batches, a failed
frame failing for good, a job ending. The store applies them inside its transactions."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from farm_common.protocol import JobState
from farm_common.tiles import FRAME_MASK, unit_tile


def split_batches(frames: Sequence[int], size: int) -> list[list[int]]:
    """Cut `frames` into consecutive batches of at most `size`, order kept. A batch is one
    region of its frames (a node renders one border a batch): units of a tiled job
    (farm_common/tiles.py) of another region start a new batch."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    if not frames or max(frames) <= FRAME_MASK:  # one region: frames of an untiled job
        return [list(frames[i : i + size]) for i in range(0, len(frames), size)]
    batches: list[list[int]] = []
    for frame in frames:
        last = batches[-1] if batches else None
        if last is None or len(last) >= size or unit_tile(last[0]) != unit_tile(frame):
            batches.append([frame])
        else:
            last.append(frame)
    return batches


def frame_gives_up(
    nodes_failed: Collection[str], attempts: int, live_nodes: Collection[str], max_attempts: int
) -> bool:
    """Whether a frame that just failed is failed for good.

    The rule users rely on is "failed on 3 different nodes". A farm with fewer nodes than that
    would retry forever, so once every live node has failed the frame, `max_attempts` failures
    in total are enough.
    """
    if len(set(nodes_failed)) >= max_attempts:
        return True
    return attempts >= max_attempts and set(live_nodes) <= set(nodes_failed)


def final_job_state(total: int, done: int, failed: int) -> JobState | None:
    """The job's final state once every frame is collected or failed; None while work remains."""
    if done + failed < total:
        return None
    return JobState.COMPLETED if failed == 0 else JobState.FAILED
