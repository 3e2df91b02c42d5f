"""The benchmark harness on tiny sizes, so it cannot rot: real processes, fake Blender.

Correctness only (every frame collected, every figure file written); never a timing threshold,
the machines these run on are shared and noisy.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import (
    growth,
    node_loss,
    overhead,
    real_scheduling,
    scale,
    scheduling,
    startup,
    still,
)
from benchmarks.procs import FAKE_BLENDER, FAKE_BPY_PYTHON
from tests.orch_helpers import BLEND


def read(results: Path, name: str) -> dict:  # type: ignore[type-arg]
    body: dict = json.loads((results / f"{name}.json").read_text())  # type: ignore[type-arg]
    assert body["machine"]["nproc"] >= 1 and body["command"]
    return body


def test_overhead_harness_times_bare_and_farm_runs(tmp_path: Path) -> None:
    scene = tmp_path / "demo.blend"
    scene.write_bytes(BLEND)
    overhead.main(
        ["--runs", "1", "--frames", "3", "--threads", "1", "--blender", str(FAKE_BLENDER),
         "--scene", str(scene), "--results-dir", str(tmp_path)]
    )  # fmt: skip
    body = read(tmp_path, "overhead")
    (run,) = body["runs"]
    assert run["bare"] > 0 and run["farm"] > 0 and run["farm_one_batch"] > 0


def test_scheduling_harness_runs_dynamic_and_static_split(tmp_path: Path) -> None:
    scheduling.main(["--runs", "1", "--static-runs", "1", "--warm-runs", "1", "--frames", "9",
                     "--results-dir", str(tmp_path)])  # fmt: skip
    body = read(tmp_path, "scheduling")
    for run in body["dynamic_runs"] + body["static_runs"] + body["warm_runs"]:
        assert run["frames_done"] == 9 and run["frames_rendered_twice"] == 0
    assert body["static_runs"][0]["batches_per_node"] == [1, 1, 1]


def test_node_loss_harness_kills_a_node_and_the_job_still_completes(tmp_path: Path) -> None:
    node_loss.main(["--runs", "1", "--frames", "30", "--results-dir", str(tmp_path)])
    body = read(tmp_path, "node_loss")
    (run,) = body["runs"]
    assert body["all_frames_collected"] and run["killed_at_seconds"] is not None


def test_scale_and_growth_harness_collect_every_frame(tmp_path: Path) -> None:
    scale.main(["--frames", "300", "--nodes", "3", "--results-dir", str(tmp_path)])
    result = read(tmp_path, "scale")["result"]
    assert result["frames_done"] == 300 and result["status_samples"] >= 1
    assert result["status_decoded_p50_ms"] >= result["status_p50_ms"] > 0
    # every slot took at least its first batch (later ones are cut to the nodes' speed)
    assert result["batches"] >= result["nodes"] * result["slots_per_node"]
    # The burst's make-up: one scene push per node (HEAD + PUT) and a POST per slot.
    asked = result["burst_requests"]
    assert asked["PUT scenes"] == asked["HEAD scenes"] == 3 and asked["POST jobs"] == 6, asked
    growth.main(
        ["--frames", "100", "200", "--nodes", "2", "3", "--results-dir", str(tmp_path)]
    )  # fmt: skip
    body = read(tmp_path, "growth")
    assert [r["frames_done"] for r in body["results"]] == [100, 100, 200, 200]
    assert len(body["ratios"]) == 4


def test_startup_harness_times_four_ways_and_sees_the_warm_slot(tmp_path: Path) -> None:
    scene = tmp_path / "demo.blend"
    scene.write_bytes(BLEND)
    startup.main(
        ["--runs", "1", "--frames", "3", "--threads", "1", "--blender", str(FAKE_BLENDER),
         "--bpy", f"bpy:{FAKE_BPY_PYTHON}", "--scene", str(scene), "--results-dir", str(tmp_path)]
    )  # fmt: skip
    body = read(tmp_path, "startup")
    (run,) = body["runs"]
    for way in ("bare_binary", "farm_binary", "bare_bpy", "farm_bpy"):
        assert run[way] > 0, way
    binary, warm = run["farm_binary_detail"], run["farm_bpy_detail"]
    # batch_size 1: a Blender per batch on the binary engine; one worker for the whole job on bpy
    assert (binary["batches"], binary["blender_starts"], binary["warm_batches"]) == (3, 3, 0)
    assert (warm["batches"], warm["blender_starts"], warm["warm_batches"]) == (3, 1, 2)
    assert warm["warm_by_batch"] == [False, True, True]


def test_real_scheduling_harness_counts_batches_warm_ones_and_speeds(tmp_path: Path) -> None:
    scene = tmp_path / "demo.blend"
    scene.write_bytes(BLEND)
    real_scheduling.main(
        ["--runs", "1", "--frames", "12", "--blender", str(FAKE_BLENDER),
         "--bpy", f"bpy:{FAKE_BPY_PYTHON}", "--scene", str(scene), "--results-dir", str(tmp_path)]
    )  # fmt: skip
    body = read(tmp_path, "real_scheduling")
    for name in ("bpy", "binary"):
        (run,) = body[name]["runs"]
        assert run["frames_done"] == 12
        nodes = run["nodes"]
        assert sum(n["frames"] for n in nodes) == 12
        # every batch the orchestrator sent ran as one job on its node, and the log says so
        assert [n["batches"] for n in nodes] == [n["node_jobs"] for n in nodes]
        for n in nodes:
            assert n["warm_batches"] + n["blender_starts"] == n["node_jobs"]
            assert n["frames"] == 0 or n["speed_frames_per_second"] > 0
        assert run["bound"] > 0 and 0 <= run["lost_to_startups"] < 1
    assert all(n["warm_batches"] == 0 for n in body["binary"]["runs"][0]["nodes"])
    # a bpy node starts one worker for the job, however many batches it takes
    assert all(n["blender_starts"] <= 1 for n in body["bpy"]["runs"][0]["nodes"])


def test_still_harness_splits_the_frame_and_compares_it_with_the_whole_one(tmp_path: Path) -> None:
    still.main(["--runs", "1", "--real-runs", "0", "--seconds", "0.5", "--startup", "0",
                "--tiles", "9", "--split-samples", "3",
                "--results-dir", str(tmp_path)])  # fmt: skip
    body = read(tmp_path, "still")
    (run,) = body["equal_nodes"]["runs"]
    tiled = run["tiled"]["9"]
    assert tiled["difference"]["identical"] and len(tiled["region_seconds"]) == 9
    assert tiled["speedup"] > 0 and tiled["nodes_used"] >= 2
    parts = run["tiled"]["samples3"]  # merged in float, developed: a level at most off
    assert parts["split_samples"] == 3 and parts["difference"]["max_abs"] <= 1.0 + 1e-6
    assert parts["speedup"] > 0 and parts["nodes_used"] >= 2 and parts["region_seconds"] is None
