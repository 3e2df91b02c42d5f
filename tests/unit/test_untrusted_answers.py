"""What the orchestrator takes from a node is bounded and checked: frame files by size and kind,
claimed slots, the number of node entries, and the speeds it learns."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from farm_common.images import MAGIC, image_problem
from farm_common.protocol import FORMATS
from orchestrator.nodes.archive import FrameFiles, Piece
from orchestrator.nodes.client import status_limit
from orchestrator.scheduling.lanes import SpeedBook
from orchestrator.scheduling.registry import MAX_NODE_SLOTS, Registry, RegistryFull
from orchestrator.scheduling.sizing import Lane, next_batch_size

PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)


def test_every_format_with_a_signature_has_one_and_others_are_taken_on_trust() -> None:
    assert set(MAGIC) <= set(FORMATS)
    assert set(FORMATS) - set(MAGIC) == {"TARGA", "TARGA_RAW"}
    assert image_problem("TARGA", b"anything") is None


@pytest.mark.parametrize(
    ("fmt", "head", "ok"),
    [
        ("PNG", PNG, True),
        ("PNG", b"<html><body>", False),
        ("PNG", b"#EXTM3U\n", False),
        ("JPEG", b"\xff\xd8\xff\xe0\x00\x10JFIF", True),
        ("OPEN_EXR", b"\x76\x2f\x31\x01\x02\x00\x00\x00", True),
        ("OPEN_EXR", PNG, False),
        ("TIFF", b"MM\x00*\x00\x00\x00\x08", True),
        ("WEBP", b"RIFF\x10\x00\x00\x00WEBPVP8 ", True),
        ("WEBP", b"RIFF\x10\x00\x00\x00WAVEfmt ", False),
        ("HDR", b"#?RADIANCE\n", True),
    ],
)
def test_image_problem_reads_the_signature(fmt: str, head: bytes, ok: bool) -> None:
    problem = image_problem(fmt, head)
    assert (problem is None) is ok
    if not ok:
        assert f"not a {fmt} image" in str(problem)


def files(tmp_path: Path, **kw: object) -> FrameFiles:
    targets = {f: tmp_path / f"frame_{f:05d}.png" for f in (1, 2)}
    return FrameFiles(targets, lambda p: p.with_suffix(".part"), **kw)  # type: ignore[arg-type]


def test_a_member_that_is_not_an_image_of_the_format_fails_its_frame(tmp_path: Path) -> None:
    placed = files(tmp_path, check=lambda head: image_problem("PNG", head))
    placed.write([Piece("frame_00001.png", b"<html>no</html>", True, True)])
    placed.write([Piece("frame_00002.png", PNG, True, True)])
    assert placed.placed == [2]
    assert "not a PNG image" in placed.failed[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame_00002.png"]


def test_a_member_past_the_size_limit_fails_and_stops_the_archive(tmp_path: Path) -> None:
    placed = files(tmp_path, max_bytes=100)
    placed.write([Piece("frame_00001.png", PNG, True, False)])
    placed.write([Piece("frame_00001.png", bytes(100), False, False)])
    placed.write([Piece("frame_00002.png", PNG, True, True)])  # ignored: the archive stopped
    assert placed.placed == []
    assert "--max-frame-mb" in placed.failed[1]
    assert placed.stop == placed.failed[1]
    assert list(tmp_path.iterdir()) == []  # the part file is gone


def test_status_answers_are_bounded_by_the_batch_they_describe() -> None:
    assert status_limit(1) < status_limit(100) < 10 << 20
    assert status_limit(10_000) < 100 << 20


def test_claimed_slots_are_clamped_to_a_nodes_most() -> None:
    registry = Registry(5.0, clock=lambda: 0.0)
    assert registry.update("http://n:8100", {"slots": 300_000}).slots == MAX_NODE_SLOTS
    assert registry.update("http://n:8100", {"slots": 3}).slots == 3


def test_the_registry_holds_a_bounded_number_of_nodes_and_forgets_long_lost_ones() -> None:
    now = [0.0]
    registry = Registry(5.0, clock=lambda: now[0], max_nodes=2, forget_after=60.0)
    registry.update("http://a:1", {})
    registry.update("http://b:1", {})
    with pytest.raises(RegistryFull, match="--max-nodes"):
        registry.update("http://c:1", {})
    registry.add_static("http://static:1")  # the operator's own list is not capped
    now[0] = 30.0  # a and b lost (5 s), not yet for long: still kept ...
    registry.update("http://a:1", {})  # ... a came back
    assert registry.forget_lost() == []
    now[0] = 80.0  # unheard of for 80 s (b) and 50 s (a): forgotten past 5 s + 60 s
    gone = {n.url for n in registry.forget_lost()}
    assert gone == {"http://b:1"}
    registry.update("http://c:1", {})  # room again: a, unheard of for 50 s, makes way
    assert {n.url for n in registry.nodes()} == {"http://static:1", "http://c:1"}


def test_a_full_registry_makes_room_from_nodes_lost_a_while() -> None:
    now = [0.0]
    registry = Registry(5.0, clock=lambda: now[0], max_nodes=1, forget_after=3600.0)
    registry.update("http://a:1", {})
    now[0] = 20.0  # lost (past 5 s) for a while: a newcomer may take its place
    registry.update("http://b:1", {})
    assert [n.url for n in registry.nodes()] == ["http://b:1"]


@pytest.mark.parametrize("seconds", [math.nan, math.inf, -1.0, 0.0])
def test_speeds_nodes_report_that_are_not_finite_positive_are_not_learnt(seconds: float) -> None:
    book = SpeedBook()
    book.observe_frame("n", "scene", seconds)
    book.observe_startup("n", seconds if seconds != 0.0 else math.nan)
    assert book.seconds_per_frame("n", "scene") is None
    assert book.startup == {}


def test_a_speed_too_small_to_be_true_is_taken_as_the_floor() -> None:
    book = SpeedBook()
    book.observe_frame("n", "scene", 5e-324)
    spf = book.seconds_per_frame("n", "scene")
    assert spf is not None and math.isfinite(1.0 / spf)
    size = next_batch_size(
        Lane(spf, 1.0, 0.0), [Lane(spf, 1.0, 0.0)], 1000, 0.0, blind=5, max_seconds=600
    )
    assert 1 <= size <= 100


def test_nodes_list_says_what_holds_each_nodes_blender() -> None:
    from orchestrator.scheduling.registry import node_view

    registry = Registry(5.0, clock=lambda: 0.0)
    node = registry.update("http://n:8100", {"sandbox": "none"})
    assert node_view(node, registry, 0.0)["sandbox"] == "none"
    registry.update("http://n:8100", {"sandbox": "bwrap"})
    assert node_view(node, registry, 0.0)["sandbox"] == "bwrap"
