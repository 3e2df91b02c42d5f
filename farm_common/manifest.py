"""A packed shot as the farm sees it: relative paths mapped to the sha256 of their contents.

The client packs a .blend with its dependencies (libraries, textures, caches) into such a tree;
the orchestrator keeps each file once in its store, and a node lays the tree out again from
its own copies. A path in a manifest is checked by `farm_pack.tree`'s rule, the one the client
packs by: a tree must never reach outside the folder it is laid out in.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from farm_pack.tree import MAX_PATH_CHARS, manifest_path_problem

MAX_MANIFEST_FILES = 20_000
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_sha(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise ValueError(f"{value[:80]!r} is not a sha256: give 64 lowercase hex digits")
    return value


Sha256 = Annotated[str, AfterValidator(_check_sha)]


class Manifest(BaseModel):
    """`{"main": "shots/010/shot.blend", "files": {"shots/010/shot.blend": "<sha256>", ...}}`"""

    model_config = ConfigDict(extra="forbid")

    main: str = Field(
        max_length=MAX_PATH_CHARS,
        description="the .blend to render, one of `files`",
        examples=["shots/010/shot.blend"],
    )
    files: dict[str, Sha256] = Field(
        max_length=MAX_MANIFEST_FILES,
        description="every file of the packed shot: relative path -> sha256 of its contents",
    )

    @model_validator(mode="after")
    def _paths(self) -> Manifest:
        for path in self.files:
            problem = manifest_path_problem(path)
            if problem:
                raise ValueError(f"path {path[:120]!r} {problem}")
        if self.main not in self.files:
            raise ValueError(f"main {self.main[:120]!r} is not one of the manifest's files")
        if not self.main.lower().endswith(".blend"):
            raise ValueError(f"main {self.main[:120]!r} must be a .blend file")
        folders = {p.rsplit("/", 1)[0] for p in self.files if "/" in p}
        parents = {"/".join(f.split("/")[:i]) for f in folders for i in range(1, f.count("/") + 2)}
        clash = sorted(parents & set(self.files))
        if clash:
            raise ValueError(f"{clash[0][:120]!r} is both a file and a folder of the manifest")
        return self

    def blobs(self) -> set[str]:
        return set(self.files.values())
