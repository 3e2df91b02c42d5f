from pathlib import Path

import httpx
import pytest

from farm_common.protocol import parse_tags
from orchestrator.client.api import _frame_file_name
from orchestrator.client.cli import (
    EXIT_ERROR,
    EXIT_FAILED_FRAMES,
    EXIT_OK,
    build_parser,
    busy_nodes,
    format_seconds,
    job_summary_line,
    report_final,
)
from orchestrator.client.local import LocalCluster
from render_node.settings import NodeSettings


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0:00"), (59.6, "1:00"), (61, "1:01"), (3725, "1:02:05"), (-3, "0:00")],
)
def test_format_seconds_reads_like_a_clock(seconds: float | None, text: str) -> None:
    assert format_seconds(seconds) == text


def test_busy_nodes_counts_distinct_nodes_with_running_batches() -> None:
    job = {
        "batches": [
            {"node": "http://a", "state": "running"},
            {"node": "http://a", "state": "running"},
            {"node": "http://b", "state": "done"},
            {"node": None, "state": "queued"},
            {"node": "http://c", "state": "running"},
            {"node": "http://d", "state": "lost"},
        ]
    }
    assert busy_nodes(job) == ["http://a", "http://c"]


def test_summary_line_shows_rate_eta_and_failures() -> None:
    job = {"state": "running", "frames": {"done": 10, "failed": 2}, "eta_seconds": 90}
    line = job_summary_line(job, elapsed=5.0)
    assert "2.00 frames/s" in line
    assert "ETA 1:30" in line
    assert "failed 2" in line


def test_summary_line_of_a_tiled_job_counts_regions_and_frames() -> None:
    job = {
        "state": "running",
        "frames": {"done": 1, "total": 2, "failed": 0},
        "tiles": {"per_frame": 9, "grid": [3, 3], "total": 18, "done": 13},
    }
    line = job_summary_line(job, elapsed=2.0)
    assert "regions 13/18 (3x3 a frame)" in line and "frames 1/2" in line
    assert (
        build_parser().parse_args(["render", "s.blend", "--frames", "1", "--tiles", "9"]).tiles == 9
    )
    plain = build_parser().parse_args(["render", "s.blend", "--frames", "1"])
    assert (plain.tiles, plain.tile_margin) == (1, None)
    margin = ["render", "s.blend", "--frames", "1", "--tiles", "4", "--tile-margin", "0"]
    assert build_parser().parse_args(margin).tile_margin == 0


def test_summary_line_of_a_job_split_by_samples_counts_parts_and_frames() -> None:
    job = {
        "state": "running",
        "frames": {"done": 0, "total": 1, "failed": 0},
        "samples": {"per_frame": 4, "samples": 128, "total": 4, "done": 3},
    }
    line = job_summary_line(job, elapsed=2.0)
    assert "parts 3/4 (4 a frame, 128 samples)" in line and "frames 0/1" in line
    args = ["render", "s.blend", "--frames", "1", "--split-samples", "4"]
    assert build_parser().parse_args(args).split_samples == 4
    assert build_parser().parse_args(args[:4]).split_samples == 1


@pytest.mark.parametrize(
    ("state", "failed", "code"),
    [
        ("completed", 0, EXIT_OK),
        ("failed", 3, EXIT_FAILED_FRAMES),
        ("cancelled", 0, EXIT_ERROR),
    ],
)
def test_exit_code_says_whether_frames_failed(state: str, failed: int, code: int) -> None:
    job = {"id": "j", "state": state, "frames": {"done": 1, "total": 4, "failed": failed}}
    assert report_final(job, None, 1.0) == code


def _response(headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(200, headers=headers, request=httpx.Request("GET", "http://x/"))


@pytest.mark.parametrize(
    ("headers", "name"),
    [
        ({"content-type": "image/png"}, "frame_00007.png"),
        ({"content-type": "image/jpeg"}, "frame_00007.jpg"),
        ({"content-disposition": 'attachment; filename="frame_00007.exr"'}, "frame_00007.exr"),
        ({"content-disposition": 'attachment; filename="../../etc/passwd"'}, "passwd"),
        (
            {"content-disposition": 'attachment; filename=".bashrc"', "content-type": "image/png"},
            "frame_00007.png",
        ),
    ],
)
def test_downloaded_file_names_stay_inside_the_output_folder(
    headers: dict[str, str], name: str
) -> None:
    assert _frame_file_name(_response(headers), 7) == name


def test_parser_accepts_the_contract_flags() -> None:
    args = build_parser().parse_args(
        [
            "render",
            "scene.blend",
            "--frames",
            "1-10x2",
            "--out",
            "o",
            "--batch-size",
            "4",
            "--orchestrator",
            "http://h:1",
        ]
    )
    assert (args.scene, args.frames, args.out, args.batch_size) == ("scene.blend", "1-10x2", "o", 4)
    up = build_parser().parse_args(["up", "--nodes", "5"])
    assert up.nodes == 5


def test_local_cluster_shares_cores_between_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert LocalCluster(nodes=3).threads_per_node() == 2
    assert LocalCluster(nodes=16).threads_per_node() == 1
    assert LocalCluster(nodes=3, threads=4).threads_per_node() == 4


def test_local_cluster_keeps_its_token_between_runs(tmp_path: Path) -> None:
    first = LocalCluster(data_dir=tmp_path).ensure_token()
    second = LocalCluster(data_dir=tmp_path).ensure_token()
    assert first == second and len(first) >= 24
    assert (tmp_path / "token").stat().st_mode & 0o077 == 0


def test_farm_up_nodes_hide_the_whole_farm_folder_from_blender(tmp_path: Path) -> None:
    """The orchestrator's database, the other nodes' jobs and the token file live there."""
    from render_node.cli import parse_settings

    cluster = LocalCluster(data_dir=tmp_path / ".farm")
    settings = parse_settings(cluster.node_args(1)[1:])
    assert settings.sandbox_hide == [(tmp_path / ".farm").resolve()]
    assert settings.data_dir is not None
    assert settings.data_dir.is_relative_to(tmp_path / ".farm")
    assert cluster.data_dir / "orchestrator" != settings.data_dir


def test_node_actions_name_the_node_by_its_url() -> None:
    for action in ("drain", "pause", "resume"):
        args = build_parser().parse_args(["node", action, "http://10.0.0.5:8100"])
        assert (args.action, args.url) == (action, "http://10.0.0.5:8100")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["node", "stop", "http://10.0.0.5:8100"])
    args = build_parser().parse_args(["requeue", "abc", "--frames", "4-9"])
    assert (args.id, args.frames, args.failed) == ("abc", "4-9", False)
    with pytest.raises(SystemExit):  # one or the other
        build_parser().parse_args(["requeue", "abc", "--frames", "4", "--failed"])
    args = build_parser().parse_args(["video", "abc"])
    assert (args.id, args.fps, args.frames, args.out) == ("abc", 24, None, None)
    args = build_parser().parse_args(["video", "abc", "--fps", "12", "--frames", "1-9"])
    assert (args.fps, args.frames) == (12, "1-9")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["video", "abc", "--fps", "fast"])


def test_tags_are_lowercase_names_each_once() -> None:
    assert parse_tags(" GPU, highmem,gpu ,, ") == ["gpu", "highmem"]
    for bad in ("gpu!", "-x", "a" * 41, ",".join(f"t{i}" for i in range(33))):
        with pytest.raises(ValueError):
            parse_tags(bad)
    args = build_parser().parse_args(["render", "s.blend", "--frames", "1", "--tags", "Gpu,x"])
    assert args.tags == ["gpu", "x"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["render", "s.blend", "--frames", "1", "--tags", "g p u"])
    assert NodeSettings(tags="GPU, highmem").tag_list == ["gpu", "highmem"]
    with pytest.raises(ValueError):
        NodeSettings(tags="gpu!")
