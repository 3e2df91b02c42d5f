"""What a sample split needs of the scene: Cycles, its samples, no denoiser (read from the
.blend); the refusals say what to do instead."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from farm_common.blendfile import CyclesScene
from farm_common.errors import BadRequest
from orchestrator.api import render_jobs
from orchestrator.api.views import as_parts
from orchestrator.store.queries import Job


def check(monkeypatch: pytest.MonkeyPatch, scene: CyclesScene | None, parts: int = 4) -> int:
    monkeypatch.setattr(render_jobs, "scene_cycles", lambda path: scene)
    return asyncio.run(render_jobs.check_split_samples(parts, 1, "PNG", Path("s.blend"), 1))


def test_the_frame_samples_are_the_scenes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check(monkeypatch, CyclesScene("CYCLES", 128, False)) == 128
    assert check(monkeypatch, CyclesScene("CYCLES", 4, False)) == 4


@pytest.mark.parametrize(
    ("scene", "says"),
    [
        (CyclesScene("BLENDER_EEVEE_NEXT", 64, False), "renders with BLENDER_EEVEE_NEXT"),
        (CyclesScene("CYCLES", 128, True), "Turn denoising off in the scene"),
        (CyclesScene("CYCLES", 3, False), "at most that many"),
        (None, "cannot be read from the file"),
    ],
)
def test_a_split_the_scene_cannot_take_is_refused_saying_why(
    monkeypatch: pytest.MonkeyPatch, scene: CyclesScene | None, says: str
) -> None:
    with pytest.raises(BadRequest, match=says):
        check(monkeypatch, scene)


def test_a_split_jobs_pieces_are_named_parts() -> None:
    fields = dict(
        id="j", seq=1, scene="s", scene_sha="x", frames_spec="1", format="PNG", priority=0,
        batch_size=1, video=0, state="running", created=0.0, started=None, finished=None,
        error=None, total=4, done=1, failed=0, rendering=1,
    )  # fmt: skip
    entry = {"frame": 1, "tiles": 4, "tiles_done": 1, "tile": 2, "state": "rendering"}
    split = Job(**fields, sample_parts=4, samples=64)  # type: ignore[arg-type]
    assert as_parts([entry], split) == [
        {"frame": 1, "parts": 4, "parts_done": 1, "part": 2, "state": "rendering"}
    ]
    tiled = Job(**{**fields, "total": 4}, tiles=4)  # type: ignore[arg-type]
    assert as_parts([entry], tiled) == [entry]
    assert (split.pieces, split.frame_count, tiled.pieces) == (4, 1, 4)
    assert split.speed_key != tiled.speed_key  # a part takes longer than a region
