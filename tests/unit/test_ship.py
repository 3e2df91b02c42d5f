"""The upload steps both clients share (farm_pack.ship): which files to send, asked in slices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from farm_pack.pack import Pack, PackedFile
from farm_pack.ship import ASKED_AT_ONCE, plan_upload


class FakeFarm:
    def __init__(self, held: set[str]) -> None:
        self.held = held
        self.asked: list[int] = []

    def missing_files(self, shas: list[str]) -> list[str]:
        self.asked.append(len(shas))
        return [sha for sha in shas if sha not in self.held]

    def put_file(self, sha: str, path: Path, on_bytes: Callable[[int], None] | None = None) -> None:
        raise AssertionError("planning sends nothing")


def test_a_big_shot_is_asked_about_in_slices_and_each_lacking_file_is_sent_once() -> None:
    count = 2 * ASKED_AT_ONCE + 5
    files = [
        PackedFile(f"tex/{n}.png", Path(f"/p/{n}"), 10, sha256=f"{n:064x}") for n in range(count)
    ]
    files.append(PackedFile("tex/copy.png", Path("/p/copy"), 10, sha256=f"{0:064x}"))  # same bytes
    farm = FakeFarm(held={f"{n:064x}" for n in range(0, count, 2)})
    upload = plan_upload(farm, Pack(project=Path("/p"), main="tex/0.png", files=files))
    assert farm.asked == [ASKED_AT_ONCE, ASKED_AT_ONCE, 5]
    assert sorted(f.sha256 for f in upload.files) == [f"{n:064x}" for n in range(1, count, 2)]
    assert upload.bytes == 10 * len(upload.files)
    assert upload.held_files == len(files) - len(upload.files)
    assert upload.held_bytes == 10 * upload.held_files
