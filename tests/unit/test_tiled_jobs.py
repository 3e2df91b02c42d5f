"""A tiled job's units of work (farm_common/tiles.py) through the store and the queue: cut
into batches of one region, never joined across regions, counted per frame, found on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm_common.frames import MAX_FRAME_NUMBER
from farm_common.tiles import tiled_units, unit, unit_frame, unit_tile
from orchestrator.renders import collected_units, output_path, tile_path
from orchestrator.scheduling.queue import JobQueue
from orchestrator.store.db import Store
from orchestrator.store.transitions import split_batches


@pytest.mark.parametrize("frame", [0, 1, 250, MAX_FRAME_NUMBER])
@pytest.mark.parametrize("tile", [0, 1, 15, 255])
def test_a_unit_gives_back_its_frame_and_region(frame: int, tile: int) -> None:
    assert (unit_frame(unit(frame, tile)), unit_tile(unit(frame, tile))) == (frame, tile)


def test_an_untiled_jobs_units_are_its_frames() -> None:
    assert tiled_units([5, 3, 9], 1, 2) == [5, 3, 9]
    assert unit(42, 0) == 42


def test_units_go_out_a_chunk_of_frames_at_a_time_region_by_region() -> None:
    units = tiled_units([1, 2, 3], 2, 2)
    assert [(unit_frame(u), unit_tile(u)) for u in units] == [
        (1, 0), (2, 0), (1, 1), (2, 1), (3, 0), (3, 1),
    ]  # fmt: skip
    batches = split_batches(units, 2)
    assert [[(unit_frame(u), unit_tile(u)) for u in b] for b in batches] == [
        [(1, 0), (2, 0)], [(1, 1), (2, 1)], [(3, 0)], [(3, 1)],
    ]  # fmt: skip


def test_a_batch_never_holds_two_regions_even_when_retried_units_mix() -> None:
    mixed = [unit(1, 0), unit(2, 0), unit(1, 3), unit(5, 3), unit(5, 0)]
    assert split_batches(mixed, 10) == [mixed[:2], mixed[2:4], mixed[4:]]


def make_store(tmp_path: Path, frames: list[int], tiles: int, batch_size: int):  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "db.sqlite3")
    job, batches = store.create_job(
        scene="demo.blend", scene_sha="ab" * 32, frames_spec="x", frames=frames, fmt="PNG",
        priority=0, batch_size=batch_size, video=False, now=1.0, tiles=tiles,
    )  # fmt: skip
    return store, job, batches


def test_the_queue_joins_only_batches_of_one_region(tmp_path: Path) -> None:
    _, _, batches = make_store(tmp_path, [1, 2, 3, 4], tiles=2, batch_size=1)
    queue = JobQueue()
    queue.add(batches)
    cut = queue.take(batches[0], 4)  # four frames asked, the next batch is another region
    assert cut.batch.frames == [unit(1, 0)] and cut.absorbed == []


def test_a_tiled_jobs_frames_count_when_every_region_is_in(tmp_path: Path) -> None:
    store, job, batches = make_store(tmp_path, [1, 2], tiles=4, batch_size=2)
    assert job.total == 8 and job.frame_count == 2 and len(batches) == 4
    assert all(len({unit_tile(u) for u in b.frames}) == 1 for b in batches)
    for batch in batches[:3]:
        store.dispatch_batch(batch, "http://a", 2.0)
        store.collect_frames(job.id, batch.id, [(u, 1.0) for u in batch.frames])
    store.dispatch_batch(batches[3], "http://b", 3.0)
    assert store.tiled_counts(job.id, 4) == {"done": 0, "failed": 0, "rendering": 2}
    assert store.done_frames(job.id, 4) == []
    store.collect_frames(job.id, batches[3].id, [(unit(2, 3), 2.0)])
    assert store.tiled_counts(job.id, 4) == {"done": 1, "failed": 0, "rendering": 1}
    assert store.done_frames(job.id, 4) == [2]
    assert store.frame_state(job.id, 2, 4) == "done"
    assert store.frame_state(job.id, 1, 4) == "rendering"
    settled = store.settle_batch(
        batches[3].id, "failed", {unit(1, 3): "Error: out of memory"}, {"http://b"}, 1, 4.0
    )
    assert settled.failed == [unit(1, 3)] and settled.job_state == "failed"
    assert store.failed_frames(job.id, pieces=4) == [
        {"frame": 1, "tile": 3, "error": "Error: out of memory", "nodes": ["http://b"]}
    ]
    one, two = store.frame_list(job.id, None, 4)
    assert one == {
        "frame": 1, "state": "failed", "tiles": 4, "tiles_done": 3, "attempts": 1,
        "error": "region 3: Error: out of memory", "nodes": ["http://a", "http://b"],
    }  # fmt: skip
    assert two["state"] == "done" and two["seconds"] == 5.0  # its regions' time, all told
    assert store.frame_states(job.id, 4) == ([1, 2], ["failed", "done"])


def test_after_a_restart_regions_on_disk_count_and_an_unstitched_frame_renders_one_again(
    tmp_path: Path,
) -> None:
    renders = tmp_path / "renders"
    output_path(renders, "job1", 1, ".png").parent.mkdir(parents=True)
    output_path(renders, "job1", 1, ".png").write_bytes(b"stitched")
    for tile in range(4):  # frame 2: every region in, the stitch never happened
        path = tile_path(renders, "job1", 2, tile, ".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"region")
    tile_path(renders, "job1", 3, 1, ".png").parent.mkdir(parents=True)
    tile_path(renders, "job1", 3, 1, ".png").write_bytes(b"region")
    found = collected_units(renders, "job1", 4)
    assert found == {unit(1, t) for t in range(4)} | {unit(2, t) for t in range(3)} | {unit(3, 1)}
    assert collected_units(renders, "nothing-here", 4) == set()
