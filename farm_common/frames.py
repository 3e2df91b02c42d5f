"""Frame specs: parsing "1-10,20-30x2" into frame numbers and compacting them back.

Pure functions shared by the node and the orchestrator; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_FRAMES = 100_000
# Blender's own limit for scene.frame_end / -e.
MAX_FRAME_NUMBER = 1_048_574
# Longer numbers are refused before int() reads them (a 5,000-digit one is past Python's limit).
MAX_FRAME_DIGITS = len(str(MAX_FRAME_NUMBER))

_PART = re.compile(r"^(-?\d+)(?:\s*-\s*(-?\d+)(?:\s*[x:]\s*(\d+))?)?$")


class FrameSpecError(ValueError):
    """A frame spec the user has to fix; the message says how."""


def parse_frame_spec(spec: str, max_frames: int = MAX_FRAMES) -> list[int]:
    """Return the frames of `spec` in order, duplicates removed.

    Accepts "7", "1-100", "1-100x5" (every 5th frame), "1,3,7" and any comma list of those.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise FrameSpecError("frame spec is empty: give frames like '1-24', '1-100x5' or '1,3,7'")
    seen: set[int] = set()
    frames: list[int] = []
    walked = 0
    for raw in spec.split(","):
        part = raw.strip()
        match = _PART.match(part)
        if not match:
            raise FrameSpecError(
                f"cannot read {part[:40]!r} in frame spec {spec[:80]!r}: "
                "use N, A-B or A-BxSTEP separated by commas"
            )
        numbers = [g for g in match.groups() if g is not None]
        if any(len(n.lstrip("-")) > MAX_FRAME_DIGITS for n in numbers):
            raise FrameSpecError(
                f"a number in {part[:40]!r} has more than {MAX_FRAME_DIGITS} digits: "
                f"Blender's last frame is {MAX_FRAME_NUMBER}"
            )
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) is not None else start
        step = int(match.group(3)) if match.group(3) is not None else 1
        if start < 0 or end < 0:
            raise FrameSpecError(f"negative frame in {part!r}: frames start at 0")
        if end < start:
            raise FrameSpecError(f"range {part!r} is reversed: write {end}-{start}")
        if step < 1:
            raise FrameSpecError(f"step in {part!r} must be at least 1")
        if end > MAX_FRAME_NUMBER:
            raise FrameSpecError(f"frame {end} is past Blender's last frame {MAX_FRAME_NUMBER}")
        count = (end - start) // step + 1
        if count > max_frames:
            raise FrameSpecError(
                f"{part!r} is {count} frames, more than {max_frames} per job: split the job"
            )
        # Bounds the work on heavily overlapping specs ("1-99999,1-99999,...").
        walked += count
        if walked > 4 * max_frames:
            raise FrameSpecError(
                f"frame spec {spec[:80]!r} repeats too many frames: remove overlaps"
            )
        for frame in range(start, end + 1, step):
            if frame not in seen:
                seen.add(frame)
                frames.append(frame)
        if len(frames) > max_frames:
            raise FrameSpecError(
                f"frame spec {spec[:80]!r} asks for more than {max_frames} frames: split the job"
            )
    return frames


def compact_frames(frames: Iterable[int]) -> str:
    """Write frames back as a short spec: [1,2,3,5,7,9,10] -> "1-3,5-9x2,10".

    Order is kept; runs with a constant step of at least 3 frames become A-BxS.
    """
    items = list(frames)
    parts: list[str] = []
    i = 0
    while i < len(items):
        start = items[i]
        if i + 1 < len(items) and items[i + 1] > start:
            step = items[i + 1] - start
            j = i + 1
            while j + 1 < len(items) and items[j + 1] - items[j] == step:
                j += 1
            run = j - i + 1
            if step == 1 and run >= 2:
                parts.append(f"{start}-{items[j]}")
                i = j + 1
                continue
            if run >= 3:
                parts.append(f"{start}-{items[j]}x{step}")
                i = j + 1
                continue
        parts.append(str(start))
        i += 1
    return ",".join(parts)
