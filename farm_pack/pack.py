"""Packing a shot for the farm: the .blend and every file it needs, as a manifest.

blender-asset-tracer traces the dependencies recursively (libraries of libraries, textures,
sequences, UDIM tiles, caches) and rewrites the paths of .blend files that point outside the
project so the packed tree is self-contained and relative. Nothing is copied: files that keep
their place are read where they are, and only rewritten .blend files are written, to a temp
folder. Each file is then named by its sha256, so the farm is sent only what it lacks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath

from blender_asset_tracer import blendfile, bpathlib, trace
from blender_asset_tracer.pack import Packer
from blender_asset_tracer.pack.transfer import FileTransferer

from .tree import file_sha256, manifest_path_problem

log = logging.getLogger(__name__)

OUTSIDE = "_outside_project"  # where BAT puts files from outside the project
PACK_ROOT = Path("/farm-pack")  # a name only: BAT computes paths under it, nothing is written


@dataclass
class PackedFile:
    rel: str  # in the packed tree
    source: Path  # where its bytes are read from now
    size: int
    sha256: str = ""
    original: Path | None = None  # where the shot refers to it (for outside-project files)


@dataclass
class Pack:
    project: Path
    main: str
    files: list[PackedFile]
    missing: list[Path] = field(default_factory=list)
    outside: list[Path] = field(default_factory=list)  # packed, from outside the project

    @property
    def manifest(self) -> dict[str, object]:
        return {"main": self.main, "files": {f.rel: f.sha256 for f in self.files}}

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


class PackError(Exception):
    """The shot cannot be packed (a path the farm cannot lay out, a file BAT cannot read)."""


class UnreadableBlend(PackError):
    """BAT cannot read the .blend itself (not a .blend, or a layout it does not know)."""


class _Recorder(FileTransferer):  # type: ignore[misc]
    """Takes BAT's transfers down instead of making them, at once and on the calling thread
    (BAT's own transferer is a thread that polls its queue): copies are read from their source
    when uploaded; moves (the .blend files BAT rewrote, in its temp folder) are kept in ours."""

    def __init__(self, keep: Path) -> None:
        super().__init__()
        self.keep = keep
        self.entries: list[tuple[Path, PurePosixPath]] = []

    def start(self) -> None:
        pass  # nothing runs apart

    def run(self) -> None:
        pass

    def queue_copy(self, src: Path, dst: PurePath) -> None:
        self.entries.append((Path(src), _relative(dst)))

    def queue_move(self, src: Path, dst: PurePath) -> None:
        rel = _relative(dst)
        if rel.name == "pack-info.txt":
            return
        kept = self.keep / str(len(self.entries))
        shutil.move(src, kept)
        self.entries.append((kept, rel))

    def done_and_join(self) -> None:
        pass

    def abort_and_join(self) -> None:
        pass


def _relative(dst: PurePath) -> PurePosixPath:
    return PurePosixPath(Path(dst).relative_to(PACK_ROOT).as_posix())


class _RecordingPacker(Packer):  # type: ignore[misc]
    def __init__(self, blend: Path, project: Path, keep: Path) -> None:
        super().__init__(blend, project, str(PACK_ROOT))
        self.recorder = _Recorder(keep)

    def _create_file_transferer(self) -> FileTransferer:
        return self.recorder


def default_project(blend: Path) -> Path:
    """The folder the shot's relative paths stay in: the .blend's folder and every folder its
    `//` paths reach (a shot in shots/010/ linking //../../lib/ makes it the folder of both).
    Absolute paths do not widen it: such files are outside the project and packed apart."""
    folders = [blend.parent]
    for usage in trace.deps(blend):
        if usage.asset_path.is_blendfile_relative():
            with contextlib.suppress(OSError, ValueError):
                folders.append(bpathlib.make_absolute(usage.abspath).parent)
    return Path(os.path.commonpath([str(f) for f in folders]))


@contextlib.contextmanager
def pack_shot(
    blend: Path, project: Path | None = None, main_as: str | None = None
) -> Iterator[Pack]:
    """Trace and pack `blend`; the Pack's rewritten files live until the context ends.
    `main_as` names the main file in the pack (beside it, in the same folder): the add-on packs
    a saved copy of the open file under the file's own name."""
    try:
        with _packed(bpathlib.make_absolute(blend), project) as pack:
            if main_as:
                _rename_main(pack, main_as)
            yield pack
    finally:
        # BAT caches parsed files by path: a .blend saved again must be read again.
        blendfile.close_all_cached()


@contextlib.contextmanager
def _packed(blend: Path, project: Path | None) -> Iterator[Pack]:
    try:
        blendfile.open_cached(blend)  # read once: the trace below takes it from BAT's cache
    except Exception as exc:  # BAT raises what the bytes make it raise
        raise UnreadableBlend(f"cannot read {blend} as a .blend: {exc}") from exc
    if project is None:
        project = default_project(blend)
    project = bpathlib.make_absolute(project)
    if not blend.is_relative_to(project):
        raise PackError(f"{blend} is not inside the project folder {project}")
    with tempfile.TemporaryDirectory(prefix="farm-pack-") as keep:
        packer = _RecordingPacker(blend, project, Path(keep))
        try:
            packer.strategise()
            packer.execute()
        except (OSError, ValueError) as exc:
            raise PackError(f"cannot pack {blend}: {exc}") from exc
        finally:
            packer.close()
        files: dict[str, PackedFile] = {}
        outside: list[Path] = []
        for source, rel in packer.recorder.entries:
            name = rel.as_posix()
            problem = manifest_path_problem(name)
            if problem:
                raise PackError(f"packed path {name!r} {problem}")
            original = None
            if rel.parts and rel.parts[0] == OUTSIDE:
                original = Path("/", *rel.parts[1:])
                outside.append(original)
            files[name] = PackedFile(name, source, source.stat().st_size, original=original)
        main = blend.relative_to(project).as_posix()
        if main not in files:
            raise PackError(f"BAT did not pack the main file {main}")
        yield Pack(
            project=project,
            main=main,
            files=sorted(files.values(), key=lambda f: f.rel),
            missing=sorted(packer.missing_files),
            outside=sorted(set(outside)),
        )


def _rename_main(pack: Pack, name: str) -> None:
    renamed = PurePosixPath(pack.main).with_name(name).as_posix()
    if renamed == pack.main or any(f.rel == renamed for f in pack.files):
        return  # the shot needs a file of that name itself (a library linking it back)
    problem = manifest_path_problem(renamed)
    if problem:
        raise PackError(f"the main file cannot be named {renamed!r}: it {problem}")
    for item in pack.files:
        if item.rel == pack.main:
            item.rel = renamed
    pack.files.sort(key=lambda f: f.rel)
    pack.main = renamed


def hash_files(pack: Pack) -> None:
    for item in pack.files:
        item.sha256, item.size = file_sha256(item.source)
